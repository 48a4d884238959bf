"""Loki (the bench stand-in in the binary's place, tools/log_standin) as an operator checks it: it
answers its readiness endpoint over https with the stack's CA and not in clear text, only to a client
presenting a certificate of the stack's CA (mutual TLS; the stand-in's listener does that handshake as
Loki's would), gRPC stays on loopback (in its configuration: the stand-in opens no gRPC port), it runs
unprivileged under the hardened unit, its configuration and rules are readable by root and Loki only,
and every shipper host reaches it through the firewall.

The stand-in stores and answers no logs: what it proves and what it cannot, README, "What is verified,
and how"."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from bench_checks import (CA_FILE, assert_dry_run_changes_nothing, bench_host, hosts, http_status, journal,
                          unit_exposure)

testinfra_hosts = hosts("loki")

READY = "https://127.0.0.1:3100/ready"
# Every host's certificate of the stack's CA (roles/pki), root:monstack-tls; the tests run as root.
HOST_CERT = {"cert": "/etc/monstack/tls/host.crt", "key": "/etc/monstack/tls/host.key"}


def test_readiness_answers_over_https_with_the_stack_ca(host):
    assert http_status(host, READY, **HOST_CERT) == 200, journal(host, "loki")


def test_plain_http_and_https_without_the_ca_are_refused(host):
    assert http_status(host, "http://127.0.0.1:3100/ready", **HOST_CERT) != 200
    assert http_status(host, READY, cacert="", **HOST_CERT) == 0, "the stack's CA is not in the system store"


def test_the_stand_in_stores_and_answers_no_logs(host):
    """The stand-in does not pretend: a query or a push gets 501, so no test can pass on fake logs."""
    assert http_status(host, "https://127.0.0.1:3100/loki/api/v1/query?query=%7Bjob%3D%22x%22%7D", **HOST_CERT) == 501


def test_the_shipper_host_reaches_loki_through_the_firewall(host):
    assert http_status(bench_host("l-app"), "https://l-loki:3100/ready", **HOST_CERT) == 200
    rules = host.check_output("nft list ruleset")
    assert re.search(r"tcp dport 3100 .*accept", rules), rules


@pytest.mark.parametrize(("path", "method"), [("/ready", "GET"), ("/loki/api/v1/query_range", "GET"),
                                             ("/loki/api/v1/push", "POST")])
def test_a_host_inside_the_fence_without_a_client_certificate_is_refused(host, path, method):
    """l-app passes the firewall and trusts the stack's CA, but presents no certificate: the handshake
    fails (curl exits non-zero, no HTTP status), for a query as for a push; with its host certificate
    it is let in."""
    app = bench_host("l-app")
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", CA_FILE,
               "-X", method, f"https://l-loki:3100{path}"]
    if method == "POST":
        command += ["-H", "Content-Type: application/json", "--data", '{"streams": []}']
    refused = app.run(" ".join(shlex.quote(part) for part in command))
    assert refused.rc != 0 and refused.stdout.strip() in ("", "000"), (refused.rc, refused.stdout, refused.stderr)
    assert http_status(app, "https://l-loki:3100/ready", **HOST_CERT) == 200, journal(host, "loki")


def test_loki_runs_unprivileged_under_the_hardened_unit(host):
    pid = host.check_output("systemctl show -p MainPID --value loki")
    assert pid != "0", journal(host, "loki")
    assert host.check_output(f"ps -o user= -p {pid}") == "loki"
    assert "CapEff:\t0000000000000000" in host.check_output(f"cat /proc/{pid}/status")
    exposure, report = unit_exposure(host, "loki.service")
    print(f"systemd-analyze security loki.service: {exposure}")
    assert exposure <= 2.0, report
    assert host.check_output("systemctl show -p FragmentPath --value loki") == "/etc/systemd/system/loki.service"


def test_the_packages_own_unit_is_diverted_not_overwriting_ours(host):
    diversion = host.check_output("dpkg-divert --list /etc/systemd/system/loki.service")
    assert "loki.service.upstream by monstack" in diversion
    assert host.file("/etc/systemd/system/loki.service.upstream").contains("ExecStart=/usr/bin/loki")
    assert host.file("/etc/systemd/system/loki.service").contains("ProtectSystem=strict")


@pytest.mark.parametrize("path", ["/etc/loki/loki.yml", "/etc/loki/rules/fake/monstack.rules.yml"])
def test_config_and_rules_are_root_and_loki_only(host, path):
    found = host.file(path)
    assert (found.user, found.group, found.mode) == ("root", "loki", 0o640)


def test_the_ruler_sends_to_the_stacks_alertmanager_over_tls(host):
    ruler = yaml.safe_load(host.check_output("cat /etc/loki/loki.yml"))["ruler"]
    assert ruler["alertmanager_url"] == "https://l-loki:9093"
    client = ruler["alertmanager_client"]
    assert client["tls_ca_path"] == "/etc/monstack/tls/ca.crt"
    # Alertmanager wants the stack's user: the ruler sends it as a Basic Authorization header whose
    # credentials Loki reads from a root:loki file, so loki.yml holds no secret.
    assert client["type"] == "Basic" and "basic_auth_password" not in client
    credentials = host.file(client["credentials_file"])
    assert (credentials.user, credentials.group, credentials.mode) == ("root", "loki", 0o640)
    header = shlex.quote(f"Authorization: Basic {credentials.content_string.strip()}")
    # What the ruler would call answers, from this host, with that CA and that header, and not without.
    probe = "curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert /etc/monstack/tls/ca.crt"
    assert host.check_output(f"{probe} -H {header} https://l-loki:9093/api/v2/status") == "200"
    assert host.check_output(f"{probe} https://l-loki:9093/api/v2/status") == "401"


def test_the_data_directory_is_lokis_alone(host):
    data = host.file("/var/lib/loki")
    assert (data.user, data.group, data.mode) == ("loki", "loki", 0o750)


def test_the_stand_in_refuses_a_key_it_cannot_read_and_a_missing_config(host):
    """The stand-in is no rubber stamp: a key the loki user cannot read, or no config, stops it."""
    bad = "/tmp/loki-bad.yml"
    host.run_expect([0], f"sed -e 's#key_file: .*#key_file: /etc/monstack/tls/absent.key#' "
                         f"-e 's#http_listen_port: .*#http_listen_port: 3999#' /etc/loki/loki.yml > {bad} && chmod 0644 {bad}")
    try:
        result = host.run(f"runuser -u loki -- timeout 10 /usr/bin/loki -config.file={bad}")
        assert result.rc == 1 and "key_file" in result.stderr, (result.rc, result.stderr)
        missing = host.run("runuser -u loki -- timeout 10 /usr/bin/loki -config.file=/tmp/absent.yml")
        assert missing.rc == 1 and "cannot read the configuration" in missing.stderr
    finally:
        host.run(f"rm -f {shlex.quote(bad)}")


def test_dry_run_of_the_converged_hosts_changes_nothing(host):
    assert_dry_run_changes_nothing()