"""The Alertmanager cluster as an operator relies on it: both members answer and see each other, a
silence made on one holds on the other, routes send each severity where the seeds say, and a broken
edit never replaces the running configuration (inhibition, end to end: test_prometheus.py)."""

from __future__ import annotations

import json
import shlex
import time
import uuid

import pytest
import testinfra

from bench_checks import CURL, INVENTORY, assert_validation_refuses, hosts, unit_exposure, wait_until

testinfra_hosts = hosts("alertmanager")

AM = "https://127.0.0.1:9093"
MEMBERS = ["m-am1", "m-am2"]


def get_json(host, url: str, **params):
    query = " ".join(f"--data-urlencode {shlex.quote(f'{key}={value}')}" for key, value in params.items())
    return json.loads(host.check_output(f"{CURL} -sfG --max-time 5 {query} {shlex.quote(url)}"))


def post_json(host, url: str, payload) -> str:
    body = shlex.quote(json.dumps(payload))
    return host.check_output(f"{CURL} -sf --max-time 5 -H 'Content-Type: application/json' -d {body} {shlex.quote(url)}")


def member(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def test_alertmanager_runs_as_its_own_user_and_is_ready(host):
    assert host.service("alertmanager").is_running and host.service("alertmanager").is_enabled
    pid = host.check_output("systemctl show -p MainPID --value alertmanager")
    assert host.check_output(f"ps -o user= -p {pid}") == "alertmanager"
    assert host.run(f"{CURL} -sf {AM}/-/ready").rc == 0


def test_every_member_sees_the_whole_cluster(host):
    def peers():
        status = get_json(host, f"{AM}/api/v2/status")["cluster"]
        return status if status["status"] == "ready" and len(status["peers"]) == len(MEMBERS) else None
    wait_until(peers, timeout=60, interval=2, what=f"{len(MEMBERS)} ready cluster peers")


def test_the_cluster_gossips_over_tls_between_peers_of_the_stack_s_ca(host):
    # The gossip port serves TLS with the host certificate, verified by the stack's CA, and wants a
    # certificate of that CA from its peer: without one the handshake is refused.
    other = [name for name in MEMBERS if name != host.backend.host][0]
    tls = "/etc/monstack/tls"
    handshake = host.run(f"openssl s_client -connect {other}:9094 -CAfile {tls}/ca.crt -cert {tls}/host.crt "
                         f"-key {tls}/host.key -verify_return_error </dev/null 2>&1")
    assert "Verify return code: 0 (ok)" in handshake.stdout, handshake.stdout[-2000:]
    without_certificate = (
        "import socket, ssl\n"
        f"context = ssl.create_default_context(cafile='{tls}/ca.crt')\n"
        f"peer = context.wrap_socket(socket.create_connection(('{other}', 9094), 5), server_hostname='{other}')\n"
        "try:\n    peer.sendall(b'x'); print('answered', peer.recv(1))\n"
        "except ssl.SSLError as error:\n    print('refused', error.reason)\n")
    bare = host.run(f"python3 -c {shlex.quote(without_certificate)}")
    assert bare.stdout.startswith("refused"), f"a peer without a certificate got: {bare.stdout} {bare.stderr}"
    assert "--cluster.tls-config=" in host.check_output("systemctl show -p ExecStart --value alertmanager")


def test_a_silence_made_on_one_member_holds_on_the_other():
    first, second = member(MEMBERS[0]), member(MEMBERS[1])
    marker = f"bench-{uuid.uuid4().hex[:8]}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    created = json.loads(post_json(first, f"{AM}/api/v2/silences", {
        "matchers": [{"name": "alertname", "value": marker, "isRegex": False}],
        "startsAt": now, "endsAt": later, "createdBy": "molecule", "comment": "gossip check"}))

    def replicated():
        silences = get_json(second, f"{AM}/api/v2/silences")
        return [s for s in silences if s["id"] == created["silenceID"] and s["status"]["state"] == "active"]
    wait_until(replicated, timeout=30, interval=2, what=f"silence {created['silenceID']} on {MEMBERS[1]}")


ROUTES = [
    pytest.param("severity=critical", "critical", id="critical"),
    pytest.param("severity=warning", "warning", id="warning"),
    pytest.param("severity=info", "info", id="info"),
    pytest.param("alertname=Watchdog severity=none", "watchdog", id="watchdog"),
    pytest.param("alertname=SomethingNew", "warning", id="no-severity-goes-to-warning"),
]


@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_routes_send_each_severity_to_its_receiver(host, labels, receiver):
    result = host.run(f"amtool config routes test --config.file=/etc/alertmanager/alertmanager.yml "
                      f"--verify.receivers={receiver} {labels}")
    assert result.rc == 0, f"{labels}: {result.stdout}{result.stderr}"


def test_receivers_carry_the_integrations_configured_for_them(host):
    config = host.check_output("cat /etc/alertmanager/alertmanager.yml")
    # The scenario configures only the webhook and the dead man's switch; nothing else may appear.
    assert "http://m-prom:9999/hook" in config and "http://m-prom:9999/watchdog" in config
    assert "slack_configs" not in config and "pagerduty_configs" not in config and "email_configs" not in config


def test_unit_is_hardened(host):
    exposure, report = unit_exposure(host, "alertmanager.service")
    assert exposure <= 2.0, report


def test_configuration_holding_secrets_is_not_world_readable(host):
    config = host.file("/etc/alertmanager/alertmanager.yml")
    assert (config.user, config.group, config.mode) == ("root", "alertmanager", 0o640)


def test_packaged_unit_is_masked(host):
    assert host.file("/etc/systemd/system/prometheus-alertmanager.service").linked_to == "/dev/null"


# Values that pass every preflight check but that amtool refuses: an invalid regular expression, and
# a Go template cut short. Go template text in a variable must be hidden from Jinja (`!unsafe` in
# YAML, `{% raw %}` here, where the value travels as JSON).
BROKEN_EDITS = [
    pytest.param({"alertmanager_inhibit_rules_extra": [
        {"source_matchers": ['severity=~"("'], "target_matchers": ['severity="info"']}]},
        "alertmanager.yml", id="broken-inhibit-rule"),
    pytest.param({"alertmanager_templates": {"team": '{% raw %}{{ define "team.title" }}{{ .Status {% endraw %}'}},
                 "team.tmpl", id="broken-template"),
]


@pytest.mark.parametrize(("extra_vars", "file"), BROKEN_EDITS)
def test_broken_edit_fails_at_validation_and_alertmanager_keeps_running(extra_vars, file):
    target = assert_validation_refuses(MEMBERS[0], "alertmanager", extra_vars)
    assert target.run(f"{CURL} -sf {AM}/-/ready").rc == 0
