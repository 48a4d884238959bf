"""alertmanager.yml as roles/alertmanager renders it with every integration a site may have - Slack,
PagerDuty, email with SMTP auth, a webhook and the watchdog - checked by Alertmanager's own amtool (the
one of Debian's package, which the bench runs): no scenario has a Slack, PagerDuty or mail server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO_ROOT, run_playbook, write_inventory

RENDER_PLAYBOOK = REPO_ROOT / "tests" / "render" / "role_templates.yml"
SECRETS = {"alertmanager_slack_api_url": "https://hooks.slack.test/services/T0/B0/render-slack-secret",
           "alertmanager_pagerduty_routing_key": "render-pagerduty-secret",
           "alertmanager_smtp_auth_password": "render-smtp-secret"}
EVERYTHING = {**SECRETS, "alertmanager_email_to": "oncall@example.test",
              "alertmanager_smtp_smarthost": "smtp.example.test:587", "alertmanager_smtp_from": "am@example.test",
              "alertmanager_smtp_auth_username": "alertmanager",
              "alertmanager_webhook_receivers": [{"url": "https://hooks.example.test/incident",
                                                  "severities": ["critical"]}],
              "alertmanager_watchdog_url": "https://heartbeat.example.test/ping"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("alertmanager")
    run_playbook(RENDER_PLAYBOOK, {"render_role": "alertmanager", "render_templates": ["alertmanager.yml"],
                                   "render_out": str(out / "files"), **EVERYTHING},
                 home=out, inventory=write_inventory(out, {"alertmanager": ["am1"]}, local="am1"))
    return out / "files" / "alertmanager.yml"


def test_every_integration_passes_amtool(rendered):
    checked = subprocess.run([str(BIN / "amtool"), "check-config", str(rendered)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(rendered.read_text())
    integrations = {key for receiver in config["receivers"] for key in receiver if key.endswith("_configs")}
    assert {"slack_configs", "pagerduty_configs", "email_configs", "webhook_configs"} <= integrations, integrations


def test_the_secrets_are_read_from_their_files_not_written_in_the_config(rendered):
    text = rendered.read_text()
    assert [name for name, secret in SECRETS.items() if secret in text] == []
    config = yaml.safe_load(text)
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/smtp-auth-password"

    def configs(kind: str) -> list[dict]:
        return [c for receiver in config["receivers"] for c in receiver.get(kind, [])]
    assert configs("slack_configs") and {c["api_url_file"] for c in configs("slack_configs")} == {
        "/etc/alertmanager/slack-api-url"}
    assert configs("pagerduty_configs") and {c["routing_key_file"] for c in configs("pagerduty_configs")} == {
        "/etc/alertmanager/pagerduty-routing-key"}
