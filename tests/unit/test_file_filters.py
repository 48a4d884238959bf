"""plugins/filter/files.py: file entries for the module, and secrets moved out of configurations."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from conftest import load_module

files = load_module("plugins/filter/files.py", "monstack_files")


def test_state_files_make_one_entry_per_name_in_order():
    assert files.state_files({"b": "2", "a": "1"}, "/etc/x/{}.yml", mode="0640") == [
        {"dest": "/etc/x/a.yml", "content": "1", "mode": "0640"},
        {"dest": "/etc/x/b.yml", "content": "2", "mode": "0640"}]
    assert files.state_files({"a": {"k": [1]}}, "/etc/x/{}.yml", as_yaml=True)[0]["content"] == "k:\n- 1\n"


def test_client_secrets_move_into_files_named_by_the_configuration():
    entries = [
        {"url": "https://vm:8428/api/v1/write", "basic_auth": {"username": "p", "password": "s3cret"}},
        {"url": "https://other/write", "authorization": {"credentials": "cred-x1"}, "bearer_token": "bearer-x2",
         "oauth2": {"client_id": "c", "client_secret": "secret-cs"}},
        {"url": "https://plain/write"},
    ]
    result = files.client_secrets_to_files(entries, "/etc/prometheus/secrets", "remote-write")
    assert result["files"] == {"remote-write-0-password": "s3cret", "remote-write-1-credentials": "cred-x1",
                               "remote-write-1-client-secret": "secret-cs", "remote-write-1-bearer-token": "bearer-x2"}
    first, second, third = result["entries"]
    assert first["basic_auth"] == {"username": "p", "password_file": "/etc/prometheus/secrets/remote-write-0-password"}
    assert second["authorization"] == {"credentials_file": "/etc/prometheus/secrets/remote-write-1-credentials"}
    assert second["bearer_token_file"] == "/etc/prometheus/secrets/remote-write-1-bearer-token"
    assert "bearer_token" not in second and second["oauth2"]["client_id"] == "c"
    assert third == {"url": "https://plain/write"}
    for secret in ("s3cret", "cred-x1", "secret-cs", "bearer-x2"):
        assert secret not in repr(result["entries"])
    assert entries[0]["basic_auth"]["password"] == "s3cret", "the input is left as it was"


def test_client_secrets_refuse_what_is_not_a_list():
    with pytest.raises(AnsibleFilterError, match="remote-write: must be a list"):
        files.client_secrets_to_files({"url": "x"}, "/d", "remote-write")
