"""roles/victoriametrics: the environment file that carries its basic-auth user and password, rendered
by Ansible as the role renders it. systemd reads it back (EnvironmentFile=) and VictoriaMetrics takes
httpAuth_username and httpAuth_password as its -httpAuth.* flags (-envflag.enable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_playbook, write_inventory

RENDER_PLAYBOOK = REPO_ROOT / "tests" / "render" / "role_templates.yml"
TLS = {"cert_file": "/etc/monstack/tls/host.crt", "key_file": "/etc/monstack/tls/host.key"}
# A password with what an environment file or a shell would read otherwise: quotes, $, a space, a backslash.
PASSWORD = "it's $HOME \\ \"quoted\" %h"


def render(out: Path, web_config: dict) -> list[str]:
    run_playbook(RENDER_PLAYBOOK, {"render_role": "victoriametrics", "render_templates": ["secrets.env"],
                                   "render_out": str(out / "files"), "victoriametrics_web_config": web_config},
                 home=out, inventory=write_inventory(out, {"victoriametrics": ["lts1"]}, local="lts1"))
    return [line for line in (out / "files" / "secrets.env").read_text().splitlines()
            if line and not line.startswith("#")]


def systemd_reads(line: str) -> tuple[str, str]:
    """NAME=value as systemd's EnvironmentFile= parser reads a line of one quoted word: between single
    quotes everything is literal; between double quotes a backslash before " \\ ` or $ stands for that
    character (systemd's load_env_file, SHELL_NEED_ESCAPE)."""
    name, _, value = line.partition("=")
    quote, body = value[0], value[1:-1]
    assert quote in "'\"" and value[-1] == quote, line
    if quote == "'":
        return name, body
    word, index = "", 0
    while index < len(body):
        if body[index] == "\\" and index + 1 < len(body) and body[index + 1] in '"\\`$':
            index += 1
        word += body[index]
        index += 1
    return name, word


def test_the_user_and_password_reach_victoriametrics_as_given(tmp_path):
    lines = render(tmp_path, {"tls_server_config": TLS, "basic_auth_users": {"prometheus": PASSWORD}})
    assert dict(systemd_reads(line) for line in lines) == {"httpAuth_username": "prometheus",
                                                           "httpAuth_password": PASSWORD}


@pytest.mark.parametrize("web_config", [{}, {"tls_server_config": TLS}])
def test_without_a_user_the_file_holds_no_setting(tmp_path, web_config):
    assert render(tmp_path, web_config) == []
