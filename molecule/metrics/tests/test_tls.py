"""TLS as an operator relies on it: no stack endpoint speaks clear text, https with the stack's CA (and
the scraper's credentials where required) answers, a certificate close to expiry pages, a renewal is
served without a manual restart, and a bad user-supplied certificate changes nothing."""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import urllib.error
import urllib.request

import pytest
import testinfra
from bench_checks import (CA_FILE, CURL, INVENTORY, assert_refused_before_any_change, bench_host, http_status,
                          pki_dir, prometheus_query, run_playbook, scrape_credentials, wait_until)

testinfra_hosts = [f"ansible://m-prom?ansible_inventory={INVENTORY}"]

PROM = "https://127.0.0.1:9090"
EVERY_HOST = ["m-am1", "m-am2", "m-prom"]
# (host, port, path, needs the scraper's credentials)
ENDPOINTS = [
    ("m-prom", 9090, "/-/ready", True),
    ("m-am1", 9093, "/-/ready", True),
    ("m-am2", 9093, "/-/ready", True),
    ("m-am1", 9115, "/-/healthy", True),
    *[(name, 9100, "/metrics", True) for name in EVERY_HOST],
]


# From a host the firewall lets in (m-am1 runs the blackbox exporter, which reaches every port),
# Prometheus's and Alertmanager's APIs still want the stack's user: reading series and making
# silences is not for whoever sits inside the fence.
@pytest.mark.parametrize(("url", "method"), [
    ("https://m-prom:9090/api/v1/query?query=up", "GET"),
    ("https://m-prom:9090/api/v1/targets", "GET"),
    ("https://m-am2:9093/api/v2/silences", "POST"),
    ("https://m-am2:9093/api/v2/alerts", "GET"),
])
def test_prometheus_and_alertmanager_refuse_requests_without_credentials_from_inside_the_fence(url, method):
    inside = bench_host("m-am1")
    body = ("-H 'Content-Type: application/json' -d '{\"matchers\": [{\"name\": \"alertname\", \"value\": "
            "\"Nothing\", \"isRegex\": false}], \"startsAt\": \"2026-01-01T00:00:00Z\", \"endsAt\": "
            "\"2026-01-01T00:00:01Z\", \"createdBy\": \"bench\", \"comment\": \"refused\"}'") if method == "POST" else ""
    refused = inside.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {CA_FILE} "
                         f"-X {method} {body} {shlex.quote(url)}").stdout
    assert refused == "401", f"{method} {url} without credentials answered {refused}"
    user, password = scrape_credentials()
    wrong = inside.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {CA_FILE} "
                       f"-u {shlex.quote(user + ':not-the-password')} -X GET {shlex.quote(url)}").stdout
    assert wrong == "401", f"{url} with a wrong password answered {wrong}"
    if method == "GET":
        assert http_status(inside, url, user, password) == 200


def served_serial(host, name: str, port: int) -> str:
    """Serial number of the certificate `name:port` presents to a client on `host`."""
    return host.check_output(f"openssl s_client -connect {name}:{port} -servername {name} </dev/null 2>/dev/null "
                             "| openssl x509 -noout -serial")


def issued_serial(name: str) -> str:
    path = pki_dir() / "hosts" / f"{name}.crt"
    return testinfra.get_host("local://").check_output(f"openssl x509 -noout -serial -in {shlex.quote(str(path))}")


@pytest.mark.parametrize(("name", "port", "path", "auth"), ENDPOINTS)
def test_stack_endpoint_refuses_clear_text_and_answers_https_with_the_ca(host, name, port, path, auth):
    user, password = scrape_credentials() if auth else ("", "")
    assert http_status(host, f"http://{name}:{port}{path}", user, password) in (0, 400), "answers in clear text"
    assert http_status(host, f"https://{name}:{port}{path}", user, password, cacert="") == 0, \
        "trusted without the stack's CA"
    assert http_status(host, f"https://{name}:{port}{path}", user, password) == 200
    if auth:
        assert http_status(host, f"https://{name}:{port}{path}") == 401


def test_every_target_is_scraped_over_https_and_up(host):
    def targets():
        active = json.loads(host.check_output(f"{CURL} -sf --max-time 5 {PROM}/api/v1/targets"))["data"]["activeTargets"]
        return active if active and all(t["health"] != "unknown" for t in active) else None
    active = wait_until(targets, timeout=90, interval=3, what="every target scraped once")
    scraped = [t for t in active if not t["labels"]["job"].startswith("blackbox_")]
    assert scraped and all(t["scrapeUrl"].startswith("https://") for t in scraped), [t["scrapeUrl"] for t in scraped]
    down = [(t["scrapeUrl"], t["lastError"]) for t in active if t["health"] != "up"]
    assert not down, down


def test_every_stack_endpoint_is_probed_for_its_certificate(host):
    def probed():
        result = {r["metric"]["instance"]: r["value"][1] for r in prometheus_query(host, 'probe_success{job="blackbox_tls_stack"}')}
        return result if len(result) == len(ENDPOINTS) else None
    result = wait_until(probed, timeout=90, interval=3, what="a TLS probe of every stack endpoint")
    assert set(result) == {f"{name}:{port}" for name, port, _path, _auth in ENDPOINTS}
    assert set(result.values()) == {"1"}, result


@pytest.mark.parametrize("name", EVERY_HOST)
def test_host_key_is_readable_by_root_and_the_tls_group_only(name):
    key = bench_host(name).file("/etc/monstack/tls/host.key")
    assert (key.user, key.group, key.mode) == ("root", "monstack-tls", 0o640)
    assert oct((pki_dir() / "ca.key").stat().st_mode & 0o777) == "0o600", "the CA key on the controller is not 0600"


def test_a_certificate_five_days_from_expiry_raises_the_critical_alert_from_probe_and_disk(host):
    def firing():
        alerts = json.loads(host.check_output(f"{CURL} -sf --max-time 5 {PROM}/api/v1/alerts"))["data"]["alerts"]
        found = {(a["labels"]["instance"], a["labels"].get("path", "")) for a in alerts
                 if a["labels"]["alertname"] == "SSLCertificateExpiryCritical" and a["state"] == "firing"}
        return found if {("m-am2:9093", ""), ("m-am2", "/etc/monstack/tls/host.crt")} <= found else None
    found = wait_until(firing, timeout=150, interval=5, what="SSLCertificateExpiryCritical for m-am2")
    assert all(instance.startswith("m-am2") for instance, _path in found), f"only m-am2 is near expiry: {found}"
    on_disk = prometheus_query(host, 'monstack_certificate_expiry_timestamp_seconds{instance="m-am2",'
                            'path="/etc/monstack/tls/host.crt"}')[0]["value"][1]
    probed = prometheus_query(host, 'probe_ssl_earliest_cert_expiry{instance="m-am2:9093"}')[0]["value"][1]
    assert float(on_disk) == float(probed), "the on-disk check and the probe disagree about the same certificate"


def test_a_renewal_threshold_above_the_remaining_days_reissues_and_is_served_without_a_restart(host):
    am2 = bench_host("m-am2")
    pid = am2.check_output("systemctl show -p MainPID --value alertmanager")
    before = issued_serial("m-am2")
    assert served_serial(host, "m-am2", 9093) == before
    renew = {"pki_cert_renew_days": 10, "pki_cert_validity_days": 30}
    run = run_playbook("site.yml", "-e", json.dumps(renew), limit="m-am2")
    assert run.rc == 0 and run.recap()["m-am2"]["changed"] > 0, run.tail()
    after = issued_serial("m-am2")
    assert after != before, "nothing was reissued"
    for port in (9093, 9100):
        assert wait_until(lambda port=port: served_serial(host, "m-am2", port) == after, timeout=30, interval=2,
                          what=f"m-am2:{port} serving the new certificate")
    assert am2.check_output("systemctl show -p MainPID --value alertmanager") == pid, "alertmanager was restarted"
    again = run_playbook("site.yml", "-e", json.dumps(renew), limit="m-am2")
    assert again.rc == 0 and again.recap()["m-am2"]["changed"] == 0, again.tail()


BAD_USER_CERTIFICATES = [
    pytest.param({"cert": "hosts/m-am1.crt", "key": "hosts/m-am2.key", "ca": "ca.crt"},
                 "does not belong to the certificate", id="key-of-another-certificate"),
    pytest.param({"cert": "hosts/absent.crt", "key": "hosts/m-am2.key", "ca": "ca.crt"},
                 "is missing or not a certificate", id="missing-certificate"),
    pytest.param({"cert": "hosts/m-am2.crt", "key": "hosts/m-am2.key", "ca": "hosts/m-am1.crt"},
                 "is not the issuer", id="wrong-ca"),
]


@pytest.mark.parametrize(("files", "message"), BAD_USER_CERTIFICATES)
def test_a_bad_user_supplied_certificate_fails_before_anything_changes(files, message):
    supplied = {f"pki_user_{kind}_file": str(pki_dir() / path) for kind, path in files.items()}
    assert_refused_before_any_change(bench_host("m-am2"), supplied, message, limit="m-am2")


def from_this_machine(url: str, user: str = "", password: str = "") -> str:
    """GET url from the controller itself (not from a bench host), with the stack's CA: the status, or
    the error that stopped it."""
    context = ssl.create_default_context(cafile=str(pki_dir() / "ca.crt"))
    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except OSError as error:
        return type(getattr(error, "reason", error)).__name__


def test_the_machine_running_the_bench_opens_the_uis_as_an_admin_source_and_nothing_else():
    """firewall_admin_sources holds the bench network's gateway, the machine running molecule (the
    lab does the same for the machine running `make lab`): Prometheus and Alertmanager answer it over
    https with the stack's CA and user; an exporter port, not an admin's, stays closed to it."""
    user, password = scrape_credentials()
    address = {name: bench_host(name).check_output("hostname -I").split()[0] for name in ("m-prom", "m-am1")}
    assert from_this_machine(f"https://{address['m-prom']}:9090/-/ready", user, password) == "200"
    assert from_this_machine(f"https://{address['m-am1']}:9093/-/ready", user, password) == "200"
    assert from_this_machine(f"https://{address['m-prom']}:9090/api/v1/query?query=up") == "401"
    assert from_this_machine(f"https://{address['m-am1']}:9100/metrics", user, password) == "TimeoutError"
