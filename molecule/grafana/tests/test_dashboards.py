"""Every PromQL expression of every dashboard in the repository, evaluated by the scenario's running
Prometheus: each must be valid, and each must return data - except those listed below, each with the
reason the bench cannot produce its data. A listed expression that starts returning data fails the
test too, so the list cannot go stale."""

from __future__ import annotations

import json
import shlex
import time

from bench_checks import CURL, REPO, hosts

testinfra_hosts = hosts("prometheus")

DASHBOARDS = REPO / "roles" / "grafana" / "files" / "dashboards"
NO_MONGODB = "no MongoDB server is obtainable here: the exporter reports only mongodb_up 0"
NO_DATA_HERE = {
    'sum by (instance, type) (rate(mongodb_op_counters_total[5m]))': NO_MONGODB,
    'sum by (instance) (mongodb_connections{state="current"})': NO_MONGODB,
    'sum by (instance) (mongodb_connections{state="available"})': NO_MONGODB,
    'sum by (instance) (mongodb_memory{type="resident"})': NO_MONGODB,
    'max by (instance) (mongodb_mongod_replset_member_replication_lag)': NO_MONGODB,
    'min by (instance) (alertmanager_cluster_members)':
        "the scenario has one Alertmanager, which runs with clustering off (roles/alertmanager opens no "
        "gossip port for a lone member) and then exports no cluster metrics; molecule/metrics has the cluster",
}
# The backup panels have data once a backup has run: the test runs one on the Prometheus host (its
# timer would wait for the night).
BACKUP_RUN = "systemctl start monstack-backup@prometheus.service"
DEADLINE = 180  # seconds for every expression to return data (rates need two scrapes, 15 s apart)


def dashboard_expressions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.setdefault(node["expr"], []).append(where)
            for key, value in node.items():
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
    for path in sorted(DASHBOARDS.rglob("*.json")):
        walk(json.loads(path.read_text()), str(path.relative_to(DASHBOARDS)))
    return found


def query(host, expr: str) -> dict:
    out = host.run(f"{CURL} -sG --max-time 10 --data-urlencode {shlex.quote('query=' + expr)} "
                   "https://127.0.0.1:9090/api/v1/query")
    return json.loads(out.stdout or '{"status": "error", "error": "no answer"}')


def test_the_dashboards_have_expressions_and_no_template_variables():
    found = dashboard_expressions()
    assert len(found) > 50, sorted(found)
    assert [expr for expr in found if "$" in expr] == [], "an expression needs a variable this test cannot fill"
    assert set(NO_DATA_HERE) <= set(found), f"listed but in no dashboard: {set(NO_DATA_HERE) - set(found)}"


def test_every_dashboard_expression_is_valid_and_returns_data(host):
    host.run_expect([0], BACKUP_RUN)
    found = dashboard_expressions()
    deadline = time.monotonic() + DEADLINE
    pending = set(found)
    results: dict[str, dict] = {}
    while True:
        for expr in sorted(pending):
            results[expr] = query(host, expr)
        invalid = {expr: r.get("error") for expr, r in results.items() if r.get("status") != "success"}
        assert invalid == {}, f"Prometheus refuses dashboard expressions: {invalid}"
        pending = {expr for expr, r in results.items() if not r["data"]["result"]
                   and expr not in NO_DATA_HERE}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert pending == set(), "expressions without data: " + "; ".join(
        f"{expr} (in {', '.join(found[expr])})" for expr in sorted(pending))
    unexpectedly = [expr for expr in NO_DATA_HERE if results[expr]["data"]["result"]]
    assert unexpectedly == [], f"listed as data-less but returning data, update NO_DATA_HERE: {unexpectedly}"
    print(f"{len(found)} expressions: {len(found) - len(NO_DATA_HERE)} return data, "
          f"{len(NO_DATA_HERE)} listed without data")
