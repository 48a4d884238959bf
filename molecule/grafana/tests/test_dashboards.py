"""Every PromQL expression of every dashboard in the repository, evaluated by the scenario's running
Prometheus with the job and instance variables on All, as a dashboard opens: each must be valid, and
each must return data - except those listed below, each with the reason the bench cannot produce its
data. A listed expression that starts returning data fails the test too, so the list cannot go stale.
Every job and instance variable must list values, as Grafana asks them of the same Prometheus."""

from __future__ import annotations

import json
import re
import shlex
import time

from bench_checks import CURL, REPO, hosts

testinfra_hosts = hosts("prometheus")

DASHBOARDS = REPO / "roles" / "grafana" / "files" / "dashboards"
NO_MONGODB = "no MongoDB server is obtainable here: the exporter reports only mongodb_up 0"
NO_DATA_HERE = {
    'sum by (instance, type) (rate(mongodb_op_counters_total{job=~"$job", instance=~"$instance"}[5m]))': NO_MONGODB,
    'sum by (instance) (mongodb_connections{job=~"$job", instance=~"$instance", state="current"})': NO_MONGODB,
    'sum by (instance) (mongodb_connections{job=~"$job", instance=~"$instance", state="available"})': NO_MONGODB,
    'sum by (instance) (mongodb_memory{job=~"$job", instance=~"$instance", type="resident"})': NO_MONGODB,
    'max by (instance) (mongodb_mongod_replset_member_replication_lag{job=~"$job", instance=~"$instance"})': NO_MONGODB,
    'min by (instance) (alertmanager_cluster_members{job=~"$job", instance=~"$instance"})':
        "the scenario has one Alertmanager, which runs with clustering off (roles/alertmanager opens no "
        "gossip port for a lone member) and then exports no cluster metrics; molecule/metrics has the cluster",
}
# The backup panels have data once a backup has run: the test runs one on the Prometheus host (its
# timer would wait for the night).
BACKUP_RUN = "systemctl start monstack-backup@prometheus.service"
DEADLINE = 180  # seconds for every expression to return data (rates need two scrapes, 15 s apart)
# The dashboards' variables, each multi-valued with "All" sent as its allValue (tests/unit/
# test_grafana_config.py holds them to that): the value a dashboard opens with.
ALL = {"job": ".+", "instance": ".+"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+), (?P<label>\w+)\)$")


def with_all(expr: str) -> str:
    """The expression as Grafana sends it with every variable on All."""
    return re.sub(r"\$(\w+)", lambda m: ALL[m.group(1)], expr)


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


def dashboard_variables() -> dict[str, list[dict]]:
    """The query variables of each dashboard."""
    return {str(path.relative_to(DASHBOARDS)): [v for v in json.loads(path.read_text())["templating"]["list"]
                                                if v["type"] == "query"]
            for path in sorted(DASHBOARDS.rglob("*.json"))}


def query(host, expr: str) -> dict:
    out = host.run(f"{CURL} -sG --max-time 10 --data-urlencode {shlex.quote('query=' + with_all(expr))} "
                   "https://127.0.0.1:9090/api/v1/query")
    return json.loads(out.stdout or '{"status": "error", "error": "no answer"}')


def label_values(host, selector: str, label: str) -> dict:
    """What Grafana's label_values(selector, label) asks Prometheus."""
    out = host.run(f"{CURL} -sG --max-time 10 --data-urlencode {shlex.quote('match[]=' + with_all(selector))} "
                   f"https://127.0.0.1:9090/api/v1/label/{label}/values")
    return json.loads(out.stdout or '{"status": "error", "error": "no answer"}')


def test_the_dashboards_have_expressions_and_only_variables_this_test_fills():
    found = dashboard_expressions()
    assert len(found) > 50, sorted(found)
    unfilled = {expr: names for expr in found if (names := set(re.findall(r"\$(\w+)", expr)) - set(ALL))}
    assert unfilled == {}, f"expressions need variables this test cannot fill: {unfilled}"
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


def test_every_job_and_instance_variable_lists_values(host):
    """A variable with no values leaves its dashboard empty once an operator picks one; each is asked as
    Grafana asks it (the label values API), the variables before it on All, and its regex applied."""
    empty = {}
    for name, variables in dashboard_variables().items():
        for variable in variables:
            query_ = LABEL_VALUES.match(variable["query"])
            assert query_, f"{name}: variable {variable['name']} is not label_values(...): {variable['query']}"
            answer = label_values(host, query_["selector"], query_["label"])
            assert answer.get("status") == "success", (name, variable["name"], answer)
            keep = re.compile(variable["regex"].strip("/")) if variable["regex"] else None
            values = [value for value in answer["data"] if keep is None or keep.fullmatch(value)]
            if not values:
                empty[f"{name} ${variable['name']}"] = answer["data"]
    assert empty == {}, f"variables without values (before their regex: {empty})"
