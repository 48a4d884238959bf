"""plugins/filter/daemon_web.py: listen addresses, local URLs, the exporter-toolkit web config and the
completed, checked daemon settings."""

from __future__ import annotations

import re

import bcrypt
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("0.0.0.0:9100", "0.0.0.0", 9100),
        (":9100", "", 9100),
        ("[::]:9100", "[::]", 9100),
        ("host.example.net:9100", "host.example.net", 9100),
    ],
)
def test_listen_address_with_host_and_port_is_accepted(daemon_web, address, host, port):
    parsed = daemon_web.split_listen_address(address)
    assert parsed == {"host": host, "port": port, "error": ""}, f"{address!r} parsed as {parsed}"


@pytest.mark.parametrize(
    ("address", "complaint"),
    [
        ("0.0.0.0", "host:port"),
        ("0.0.0.0:abc", "port 'abc'"),
        ("0.0.0.0:0", "port '0'"),
        ("0.0.0.0:70000", "port '70000'"),
        # Not hex inside the brackets: refused by the shape check, whose hint shows the bracket form.
        ("[zz]:9100", "'[zz]' is not an IPv6 address"),
        ("[1:2:3:4:5:6:7:8:9]:9100", "'[1:2:3:4:5:6:7:8:9]' is not an IPv6 address"),
        ("::1:9100", "host:port"),
        # A zone index may hold anything (a newline, a space): no daemon of the stack takes one.
        ("[fe80::1%eth0]:9100", "is not an IPv6 address"),
        ("[::1%a\nUser=root]:9100", "is not an IPv6 address"),
        ("0.0.0.0:9100\n", "is not a number"),
        ("host\n:9100", "host:port"),
    ],
    ids=[
        "without-port",
        "port-not-a-number",
        "port-zero",
        "port-above-65535",
        "ipv6-not-hex",
        "ipv6-too-many-groups",
        "ipv6-without-brackets",
        "ipv6-zone-index",
        "ipv6-zone-index-with-a-newline",
        "trailing-newline",
        "newline-in-the-host",
    ],
)
def test_listen_address_that_is_wrong_is_refused_with_the_reason(daemon_web, address, complaint):
    parsed = daemon_web.split_listen_address(address)
    assert complaint in parsed["error"], f"{address!r}: expected an error mentioning {complaint!r}, got {parsed}"
    assert parsed["port"] == 0, f"{address!r}: a refused address must not yield a port, got {parsed}"


@pytest.mark.parametrize(("address", "port", "complaint"), [
    ("0.0.0.0:9100", 9100, ""),
    ("0.0.0.0:9110", 9100,
     "node_exporter_listen_address: '0.0.0.0:9110' listens on port 9110 but node_exporter_port is 9100"),
    ("0.0.0.0", 9100, "node_exporter_listen_address: '0.0.0.0' must be host:port"),
    ("0.0.0.0:70000", 70000, "node_exporter_port: '70000' is not a number from 1 to 65535"),
])
def test_listen_address_problems_name_the_variables_and_the_fix(daemon_web, address, port, complaint):
    problems = daemon_web.listen_address_problems(address, port, "node_exporter")
    assert (complaint in problems) if complaint else problems == "", problems


@pytest.mark.parametrize(
    ("address", "options", "url"),
    [
        # A wildcard listener is reached over loopback.
        ("0.0.0.0:9100", {"path": "/metrics"}, "http://127.0.0.1:9100/metrics"),
        (":9100", {"path": "/metrics"}, "http://127.0.0.1:9100/metrics"),
        ("[::]:9100", {"path": "/metrics"}, "http://[::1]:9100/metrics"),
        # A specific listen host is kept.
        ("192.0.2.10:9100", {"scheme": "https"}, "https://192.0.2.10:9100/"),
        ("[2001:db8::1]:9100", {"scheme": "https"}, "https://[2001:db8::1]:9100/"),
        ("host.example.net:9100", {"scheme": "https"}, "https://host.example.net:9100/"),
    ],
)
def test_local_url_reaches_the_listener_from_the_host_itself(daemon_web, address, options, url):
    assert daemon_web.local_url(address, **options) == url


def test_local_url_refuses_a_bad_listen_address_naming_it(daemon_web):
    with pytest.raises(AnsibleFilterError, match=r"0\.0\.0\.0:abc"):
        daemon_web.local_url("0.0.0.0:abc")


def test_bcrypt_hash_is_the_same_on_every_run_for_one_password_and_seed(daemon_web):
    first = daemon_web.stable_bcrypt("s3cret-long-password", "host1/prometheus")
    second = daemon_web.stable_bcrypt("s3cret-long-password", "host1/prometheus")
    assert first == second, "the same password and seed must give the same hash, or every run reports a change"


def test_bcrypt_hash_differs_between_seeds(daemon_web):
    one = daemon_web.stable_bcrypt("s3cret-long-password", "host1/prometheus")
    other = daemon_web.stable_bcrypt("s3cret-long-password", "host2/prometheus")
    assert one != other, "two hosts (seeds) with the same password must not share a hash"


def test_bcrypt_hash_verifies_the_password_with_cost_10(daemon_web):
    hashed = daemon_web.stable_bcrypt("s3cret-long-password", "host1/prometheus")
    assert bcrypt.checkpw(b"s3cret-long-password", hashed.encode()), f"bcrypt does not accept {hashed}"
    assert not bcrypt.checkpw(b"wrong-password", hashed.encode())
    assert hashed.startswith("$2b$10$"), f"expected bcrypt 2b with cost 10, got {hashed[:7]}"


@pytest.mark.parametrize("password", ["", None])
def test_bcrypt_refuses_an_empty_password(daemon_web, password):
    with pytest.raises(AnsibleFilterError, match="non-empty"):
        daemon_web.stable_bcrypt(password, "host1/prometheus")


def test_web_config_basic_auth_passwords_become_bcrypt_hashes_that_verify(daemon_web):
    rendered = daemon_web.web_config_render(
        {"basic_auth_users": {"prometheus": "scrape-pass", "admin": "admin-pass"}}, "host1"
    )
    users = rendered["basic_auth_users"]
    assert sorted(users) == ["admin", "prometheus"], f"users after rendering: {sorted(users)}"
    for user, password in (("prometheus", "scrape-pass"), ("admin", "admin-pass")):
        assert users[user] != password, f"{user}'s password is written in plain text"
        assert bcrypt.checkpw(password.encode(), users[user].encode()), f"{user}: hash {users[user]} does not verify"


def test_web_config_rendering_is_stable_across_runs(daemon_web):
    config = {"basic_auth_users": {"prometheus": "scrape-pass"}}
    assert daemon_web.web_config_render(config, "host1") == daemon_web.web_config_render(config, "host1")


def test_web_config_tls_settings_pass_through_unchanged(daemon_web):
    tls = {"cert_file": "/etc/node_exporter/tls.crt", "key_file": "/etc/node_exporter/tls.key", "min_version": "TLS12"}
    http = {"http2": True}
    rendered = daemon_web.web_config_render({"tls_server_config": tls, "http_server_config": http}, "host1")
    assert rendered == {"tls_server_config": tls, "http_server_config": http}


@pytest.mark.parametrize("users", [{}, None])
def test_web_config_without_users_has_no_basic_auth_section(daemon_web, users):
    rendered = daemon_web.web_config_render({"basic_auth_users": users, "tls_server_config": {}}, "host1")
    assert "basic_auth_users" not in rendered, f"an empty basic_auth_users would lock everyone out: {rendered}"


def test_web_config_of_none_is_empty(daemon_web):
    assert daemon_web.web_config_render(None, "host1") == {}


def test_web_config_does_not_modify_its_input(daemon_web):
    config = {"basic_auth_users": {"prometheus": "scrape-pass"}}
    daemon_web.web_config_render(config, "host1")
    assert config == {"basic_auth_users": {"prometheus": "scrape-pass"}}


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"tls_config": {}}, "unknown keys tls_config"),
        ({"basic_auth_users": {"prometheus": ""}}, "non-empty plaintext password"),
        ({"basic_auth_users": ["prometheus"]}, "must map each user name"),
        ("basic_auth_users: {}", "must be a dictionary"),
    ],
    ids=["misspelt-key", "empty-password", "users-as-list", "string"],
)
def test_web_config_problems_names_what_is_wrong(daemon_web, config, complaint):
    assert complaint in daemon_web.web_config_problems(config)
    assert daemon_web.web_config_problems(config, "x_web_config").startswith("x_web_config: "), \
        "given the variable's name, the problem is in settings_problems' form"


def test_web_config_problems_accepts_every_upstream_key(daemon_web):
    config = {"tls_server_config": {}, "http_server_config": {}, "basic_auth_users": {"prometheus": "pass"}}
    assert daemon_web.web_config_problems(config) == ""
    assert daemon_web.web_config_problems({}) == ""


def _daemon_defaults():
    return yaml.safe_load((REPO_ROOT / "roles/daemon/vars/main.yml").read_text())["_daemon_defaults"]


def _spec(**install):
    return {"name": "x_exporter", "user": "x", "group": "x", "ready": {"url": "https://127.0.0.1:1/metrics"},
            "install": {"method": "archive", "archive_sha256": "a" * 64, "archive_binary": "x_exporter",
                        "archive_file": "x.tar.gz", **install}}


def test_daemon_settings_merge_the_spec_over_every_default_and_add_the_tls_group(daemon_web):
    settings = daemon_web.daemon_settings(dict(_spec(), tls=True, unit={"reload": True}), _daemon_defaults(), "tls")
    assert settings["groups"] == ["tls"]
    assert settings["unit"]["reload"] is True and settings["unit"]["after"] == ["network-online.target"]
    assert settings["install"]["package_units"] == [] and settings["install"]["archive_binary"] == "x_exporter"
    plain = daemon_web.daemon_settings(_spec(), _daemon_defaults(), "tls")
    assert plain["groups"] == []


def test_daemon_settings_work_out_the_readiness_check_from_the_listen_address_and_web_config(daemon_web):
    web_config = {"tls_server_config": {"cert_file": "/c", "key_file": "/k"},
                  "basic_auth_users": {"prometheus": "first-secret", "other": "second"}}
    ready = {"listen_address": "0.0.0.0:9100", "path": "/metrics", "ca_path": "/ca.crt"}
    spec = dict(_spec(), ready=ready, web_config=web_config)
    settings = daemon_web.daemon_settings(spec, _daemon_defaults(), "tls", "host1")
    ready_without_password = {key: value for key, value in _daemon_defaults()["ready"].items() if key != "password"}
    assert settings["ready"] == dict(ready_without_password, **ready, url="https://127.0.0.1:9100/metrics",
                                     username="prometheus")
    # The settings are a fact, which -v shows: no plaintext password in them; the check reads its own.
    assert "first-secret" not in repr(settings) and "second" not in repr(settings)
    assert settings["web_config"]["basic_auth_users"]["prometheus"].startswith("$2b$10$")
    assert daemon_web.daemon_ready_password(spec) == "first-secret"
    plain = daemon_web.daemon_settings(dict(_spec(), ready={"listen_address": "[::]:9100"}), _daemon_defaults(), "tls")
    assert (plain["ready"]["url"], plain["ready"]["username"]) == ("http://[::1]:9100/", "")
    # A daemon with flags instead of a web configuration says tls itself; its own user is kept.
    flagged_spec = dict(_spec(), tls=True, ready={"listen_address": "10.0.0.5:9216", "username": "u", "password": "p"},
                        web_config={"basic_auth_users": {"prometheus": "x"}})
    flagged = daemon_web.daemon_settings(flagged_spec, _daemon_defaults(), "tls")
    assert flagged["ready"]["url"] == "https://10.0.0.5:9216/"
    assert flagged["ready"]["username"] == "u" and daemon_web.daemon_ready_password(flagged_spec) == "p"
    # A URL given is used as it is.
    given = daemon_web.daemon_settings(_spec(), _daemon_defaults(), "tls")
    assert given["ready"]["url"] == "https://127.0.0.1:1/metrics"


def test_daemon_settings_keep_the_client_certificate_of_the_readiness_check(daemon_web):
    """A daemon that requires client certificates (Loki) is checked with the host's own."""
    ready = {"listen_address": "0.0.0.0:3100", "path": "/ready", "client_cert": "/t/host.crt", "client_key": "/t/host.key"}
    settings = daemon_web.daemon_settings(dict(_spec(), tls=True, ready=ready), _daemon_defaults(), "tls")
    assert (settings["ready"]["client_cert"], settings["ready"]["client_key"]) == ("/t/host.crt", "/t/host.key")
    assert settings["ready"]["url"] == "https://127.0.0.1:3100/ready"
    plain = daemon_web.daemon_settings(_spec(), _daemon_defaults(), "tls")
    assert (plain["ready"]["client_cert"], plain["ready"]["client_key"]) == ("", "")


@pytest.mark.parametrize(("spec", "complaint"), [
    (_spec(archive_sha256="abc"), "install method 'archive' needs archive_sha256 (64 hex digits)"),
    (_spec(method="package", package="", package_binary="/usr/bin/x"), "install method 'package' needs the package"),
    (_spec(method="package", package="x", package_binary="bin/x"), "install method 'package' needs the package"),
    (_spec(method="deb", package="x", package_binary="/usr/bin/x", archive_file="", archive_url=""),
     "install method 'deb' needs"),
    (dict(_spec(), ready={"url": "127.0.0.1:1"}), "needs ready.listen_address (with ready.path) or an http(s)"),
    (dict(_spec(), ready={"path": "/metrics"}), "needs ready.listen_address (with ready.path) or an http(s)"),
    (dict(_spec(), unit={"exceptions": {"PrivateUsers": {"value": "no"}}}), "needs a 'why' (PrivateUsers"),
    # They become User=, Group= and SupplementaryGroups= lines, where a space makes two groups.
    (dict(_spec(), groups=["adm wheel"]), "'adm wheel' is not a user or group name"),
    (dict(_spec(), user="x\nUser=root"), "is not a user or group name"),
    (dict(_spec(), ready={"url": "https://127.0.0.1:1/", "client_cert": "/c"}),
     "needs both ready.client_cert and ready.client_key, or neither"),
])
def test_daemon_settings_refuse_what_is_incomplete_and_say_what(daemon_web, spec, complaint):
    with pytest.raises(AnsibleFilterError, match=re.escape(complaint)):
        daemon_web.daemon_settings(spec, _daemon_defaults(), "tls")
