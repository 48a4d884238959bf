"""Grafana (the bench stand-in in the binary's place, tools/grafana_standin) as an operator checks it:
it answers over https with the stack's CA and nowhere in clear text, runs unprivileged under the
hardened unit, its configuration, secrets and data sources are readable by root and Grafana only, its
data sources point at the stack, and the firewall lets in Prometheus but not other hosts.

What the stand-in proves and what it cannot: README, "What is verified, and how"."""

from __future__ import annotations

import hashlib
import json
import shlex

import pytest
import yaml
from bench_checks import (CA_FILE, REPO, bench_host, hosts, http_body, http_status, pki_dir, prometheus_query,
                          scrape_credentials, unit_exposure, wait_until)

testinfra_hosts = hosts("grafana")

UNIT = "grafana-server"
HEALTH = "https://127.0.0.1:3000/api/health"
DASHBOARDS = REPO / "roles" / "grafana" / "files" / "dashboards"


def test_health_answers_over_https_with_the_stack_ca(host):
    assert http_status(host, HEALTH) == 200, host.run(f"journalctl -u {UNIT} -n 20 --no-pager").stdout
    assert json.loads(http_body(host, HEALTH))["database"] == "ok"


def test_plain_http_and_https_without_the_ca_are_refused(host):
    assert http_status(host, "http://127.0.0.1:3000/api/health") != 200
    assert http_status(host, HEALTH, cacert="") == 0, "the stack's CA is not in the system store"


def test_metrics_need_the_scrapers_credentials(host):
    user, password = scrape_credentials()
    assert http_status(host, "https://127.0.0.1:3000/metrics") == 401
    assert http_status(host, "https://127.0.0.1:3000/metrics", user, "wrong") == 401
    assert http_status(host, "https://127.0.0.1:3000/metrics", user, password) == 200


def test_prometheus_scrapes_grafana_over_https():
    mon = bench_host("g-mon")
    def up():
        result = prometheus_query(mon, 'up{job="grafana", instance="g-graf"}')
        return result[0]["value"][1] if result else None
    assert wait_until(up, timeout=90, interval=3, what="a scrape of g-graf:3000") == "1"
    config = mon.check_output("cat /etc/prometheus/prometheus.yml")
    job = next(j for j in yaml.safe_load(config)["scrape_configs"] if j["job_name"] == "grafana")
    assert job["scheme"] == "https" and job["basic_auth"]["username"] == "prometheus"


def test_the_firewall_lets_prometheus_in_and_keeps_other_hosts_out():
    assert http_status(bench_host("g-mon"), "https://g-graf:3000/api/health") == 200
    assert http_status(bench_host("g-db"), "https://g-graf:3000/api/health", max_time=3) == 0


def test_grafana_runs_unprivileged_under_the_hardened_unit(host):
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    assert pid != "0", host.run(f"journalctl -u {UNIT} -n 20 --no-pager").stdout
    status = host.check_output(f"cat /proc/{pid}/status")
    assert host.check_output(f"ps -o user= -p {pid}") == "grafana"
    assert "CapEff:\t0000000000000000" in status
    exposure, report = unit_exposure(host, f"{UNIT}.service")
    print(f"systemd-analyze security {UNIT}.service: {exposure}")
    assert exposure <= 2.0, report
    assert host.check_output(f"systemctl show -p FragmentPath --value {UNIT}") == f"/etc/systemd/system/{UNIT}.service"


def test_the_package_has_upstreams_layout(host):
    for path in ("/usr/sbin/grafana-server", "/usr/share/grafana/bin/grafana", "/usr/share/grafana/conf/defaults.ini",
                 "/etc/default/grafana-server", "/usr/lib/systemd/system/grafana-server.service"):
        assert host.file(path).exists, path
    assert host.user("grafana").group == "grafana"


@pytest.mark.parametrize("path", [
    "/etc/grafana/grafana.ini", "/etc/grafana/provisioning/datasources/monstack.yaml",
    "/etc/grafana/secrets/admin_password", "/etc/grafana/secrets/secret_key", "/etc/grafana/secrets/metrics_password",
])
def test_config_secrets_and_datasources_are_root_and_grafana_only(host, path):
    found = host.file(path)
    assert (found.user, found.group, found.mode) == ("root", "grafana", 0o640)


def test_the_secret_key_is_the_one_kept_on_the_controller(host):
    kept = (pki_dir() / "grafana-secret-key").read_text().split()[0]
    assert host.check_output("cat /etc/grafana/secrets/secret_key") == kept


def test_datasources_point_at_the_stack_and_trust_its_ca(host):
    sources = {s["name"]: s for s in yaml.safe_load(
        host.check_output("cat /etc/grafana/provisioning/datasources/monstack.yaml"))["datasources"]}
    assert sorted(sources) == ["Alertmanager", "Prometheus"], "no Loki data source without a loki host"
    assert sources["Prometheus"]["url"] == "https://g-mon:9090" and sources["Prometheus"]["isDefault"]
    assert sources["Alertmanager"]["url"] == "https://g-mon:9093"
    ca = host.check_output(f"cat {CA_FILE}")
    for source in sources.values():
        assert source["secureJsonData"]["tlsCACert"].strip() == ca.strip()
        # What Grafana would call answers, from this host, with that CA and the user and password the
        # data source holds (both serve /-/ready), and refuses a request without them.
        user, password = source["basicAuthUser"], source["secureJsonData"]["basicAuthPassword"]
        assert source["basicAuth"] is True and "$" not in password
        assert http_status(host, source["url"] + "/-/ready", user, password) == 200, source["name"]
        assert http_status(host, source["url"] + "/-/ready") == 401, source["name"]


def test_the_repositorys_dashboards_are_installed_in_their_folders(host):
    expected = {str(path.relative_to(DASHBOARDS)): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in DASHBOARDS.rglob("*.json")}
    out = host.check_output("cd /etc/grafana/dashboards && find . -name '*.json' -exec sha256sum {} +")
    found = {line.split("  ", 1)[1][2:]: line.split("  ", 1)[0] for line in out.splitlines()}
    assert found == expected


def test_the_stand_in_refuses_a_key_file_it_cannot_read(host):
    """The stand-in is no rubber stamp: a key the grafana user cannot read, or no config, stops it."""
    bad = "/tmp/grafana-bad.ini"
    host.run_expect([0], f"sed 's#^cert_key = .*#cert_key = /etc/monstack/tls/absent.key#' "
                         f"/etc/grafana/grafana.ini | sed 's#^http_port = .*#http_port = 3999#' > {bad} && chmod 0644 {bad}")
    try:
        result = host.run(f"runuser -u grafana -- timeout 10 /usr/sbin/grafana-server --config={bad} "
                          "--homepath=/usr/share/grafana")
        assert result.rc == 1 and "cert_key" in result.stderr, (result.rc, result.stderr)
        missing = host.run("runuser -u grafana -- timeout 10 /usr/sbin/grafana-server --config=/tmp/absent.ini")
        assert missing.rc == 1 and "cannot read the configuration" in missing.stderr
    finally:
        host.run(f"rm -f {shlex.quote(bad)}")
