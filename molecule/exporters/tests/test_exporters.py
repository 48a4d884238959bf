"""The service exporters as an operator checks them through Prometheus: each reports its service up,
the MongoDB exporter with no server makes MongoDBDown fire, probes tell a live page from a closed port,
and every exporter runs unprivileged under a hardened unit."""

from __future__ import annotations

import json
import shlex

import pytest
from bench_checks import (CURL, bench_host, hosts, http_status, prometheus_query, scrape_credentials, unit_exposure,
                          wait_until)

testinfra_hosts = hosts("prometheus")

PROM = "https://127.0.0.1:9090"
# Which exporter runs where (molecule.yml): the metric that says it reaches its service.
SERVICE_UP = {
    ("nginx_up", "x-web"), ("nginx_up", "x-db"),
    ("redis_up", "x-web"), ("redis_up", "x-db"),
    ("pg_up", "x-db"),
}
EXPORTERS = {
    "x-web": ["nginx_exporter", "redis_exporter", "mongodb_exporter"],
    "x-db": ["nginx_exporter", "redis_exporter", "postgres_exporter"],
}


def test_every_exporter_target_is_scraped_and_up(host):
    def targets():
        found = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1]
                 for r in prometheus_query(host, 'up{job=~"nginx|redis|mongodb|postgres"}')}
        return found if len(found) == 6 else None
    found = wait_until(targets, timeout=90, interval=3, what="a scrape of every exporter")
    assert set(found.values()) == {"1"}, f"exporter targets not up: {found}"


@pytest.mark.parametrize(("metric", "instance"), sorted(SERVICE_UP))
def test_exporter_reports_its_service_up(host, metric, instance):
    def value():
        result = prometheus_query(host, f'{metric}{{instance="{instance}"}}')
        return result[0]["value"][1] if result else None
    assert wait_until(value, timeout=90, interval=3, what=f"{metric} of {instance}") == "1"


def test_postgres_exporter_exports_statement_statistics(host):
    def series():
        return prometheus_query(host, 'count(pg_stat_statements_calls_total{instance="x-db"})')
    assert int(wait_until(series, timeout=90, interval=3, what="pg_stat_statements series")[0]["value"][1]) > 0


def test_mongodb_exporter_without_a_server_reports_it_down_and_mongodb_down_fires(host):
    def down():
        result = prometheus_query(host, 'mongodb_up{instance="x-web"}')
        return result[0]["value"][1] if result else None
    assert wait_until(down, timeout=90, interval=3, what="mongodb_up of x-web") == "0"

    def firing():
        alerts = json.loads(host.check_output(f"{CURL} -sf --max-time 5 {PROM}/api/v1/alerts"))["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "MongoDBDown" and a["state"] == "firing"]
    alerts = wait_until(firing, timeout=180, interval=5, what="MongoDBDown firing")
    assert [a["labels"]["instance"] for a in alerts] == ["x-web"]
    assert alerts[0]["labels"]["severity"] == "critical"


def test_http_probe_of_a_live_page_succeeds_and_of_a_closed_port_fails(host):
    def results():
        found = {r["metric"]["instance"]: r["value"][1] for r in prometheus_query(host, 'probe_success{job="blackbox_http_2xx"}')}
        return found if len(found) == 2 else None
    found = wait_until(results, timeout=90, interval=3, what="both HTTP probe results")
    assert found == {"http://x-web/": "1", "http://x-web:81/": "0"}


def test_nginx_status_page_answers_on_loopback_and_not_from_another_host(host):
    web = bench_host("x-web")
    assert "Active connections" in web.check_output("curl -sf --max-time 5 http://127.0.0.1:8073/stub_status")
    # Bound to loopback itself, not only fenced by the firewall.
    listeners = web.check_output("ss -ltnH 'sport = :8073'")
    assert listeners and all(" 127.0.0.1:8073 " in f" {line.split()[3]} " for line in listeners.splitlines()), listeners
    refused = host.run("curl -s -o /dev/null --max-time 5 http://x-web:8073/stub_status")
    assert refused.rc != 0, "the stub_status server answers other hosts"


@pytest.mark.parametrize(("name", "unit"), [(name, unit) for name, units in EXPORTERS.items() for unit in units])
def test_exporter_runs_unprivileged_under_a_hardened_unit(name, unit):
    target = bench_host(name)
    service = target.service(unit)
    assert service.is_running and service.is_enabled
    exposure, report = unit_exposure(target, f"{unit}.service")
    assert exposure <= 2.0, report
    pid = target.check_output(f"systemctl show -p MainPID --value {unit}")
    status = target.check_output(f"grep -E '^(Uid|CapEff):' /proc/{pid}/status")
    assert status.split("Uid:")[1].split()[0] != "0", f"{unit} runs as root"
    assert "CapEff:\t0000000000000000" in status, f"{unit} holds capabilities:\n{status}"


@pytest.mark.parametrize("name", sorted(EXPORTERS))
def test_debian_packaged_exporter_units_are_masked(name):
    target = bench_host(name)
    for unit in EXPORTERS[name]:
        packaged = f"prometheus-{unit.replace('_exporter', '')}-exporter"
        state = target.run(f"systemctl is-enabled {packaged}").stdout.strip()
        assert state == "masked", f"{packaged} is {state!r}"


def test_monitoring_role_holds_pg_monitor_and_no_other_privilege():
    db = bench_host("x-db")
    query = ("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
             "(SELECT string_agg(b.rolname, ',') FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
             "WHERE m.member = r.oid) FROM pg_roles r WHERE rolname = 'postgres_exporter'")
    row = db.check_output(f"runuser -u postgres -- psql -tAc {shlex.quote(query)}")
    assert row == "f|f|f|f|f|pg_monitor", row


# (host, port, needs the scraper's credentials): every exporter endpoint of the scenario.
EXPORTER_ENDPOINTS = [
    ("x-web", 9113, False), ("x-web", 9121, False), ("x-web", 9216, False),
    ("x-db", 9113, False), ("x-db", 9121, False), ("x-db", 9187, True),
]


@pytest.mark.parametrize(("name", "port", "auth"), EXPORTER_ENDPOINTS)
def test_exporter_refuses_clear_text_and_answers_https_with_the_ca(host, name, port, auth):
    user, password = scrape_credentials() if auth else ("", "")
    # MongoDB's exporter waits up to 10 s for its absent server before it answers.
    assert http_status(host, f"http://{name}:{port}/metrics", user, password, max_time=15) in (0, 400), \
        "answers in clear text"
    assert http_status(host, f"https://{name}:{port}/metrics", user, password, max_time=15) == 200
    if auth:
        assert http_status(host, f"https://{name}:{port}/metrics", max_time=15) == 401


@pytest.mark.parametrize("target", ["x-web", "x-db"])
def test_the_firewall_keeps_the_host_s_own_web_server_reachable(target):
    # nginx listens on every address of the hosts of group nginx: the firewall added by site.yml keeps
    # it open (firewall_known_services), from a host of no particular group as from the Prometheus host.
    for source in ("x-mon", "x-web" if target == "x-db" else "x-db"):
        status = bench_host(source).run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://{target}/").stdout
        assert status == "200", f"{source} cannot reach nginx on {target} (status {status!r})"
