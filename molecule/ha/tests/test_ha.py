"""A Prometheus pair writing to VictoriaMetrics, against the real daemons: one deduplicated series per
target in long-term storage, alerts delivered once with a replica down, and no gap when either a
Prometheus or VictoriaMetrics stops for a while (the write-ahead log fills it in)."""

from __future__ import annotations

import json
import re
import shlex
import time

import yaml
from bench_checks import (CURL, REPO, assert_dry_run_changes_nothing, bench_host, journal, prometheus_query,
                          run_playbook, scrape_credentials, unit_exposure, wait_until)

VM = "https://127.0.0.1:8428"
PAIR = ("ha-p1", "ha-p2")
NODES = {"ha-p1", "ha-p2", "ha-vm"}
# prometheus_scrape_interval (the stack's, group_vars/all/scrape.yml), which VictoriaMetrics deduplicates by.
INTERVAL = 15
# VictoriaMetrics shows a sample to queries 30 s after its time (-search.latencyOffset): queries ask
# about a moment further back than that.
SETTLED = 60
TEXTFILE = "/var/lib/node_exporter/textfile/bench.prom"
DASHBOARDS = REPO / "roles" / "grafana" / "files" / "dashboards"


def vm_get(path: str, *params: str, fail: bool = True) -> str:
    """GET on VictoriaMetrics from its own host, over https with the stack's CA and user."""
    args = " ".join(f"--data-urlencode {shlex.quote(param)}" for param in params)
    command = f"{CURL} -s{'f' if fail else ''}G --max-time 15 {args} {VM}{path}"
    return bench_host("ha-vm").check_output(command)


def vm_query(promql: str, at: float) -> dict:
    return json.loads(vm_get("/api/v1/query", f"query={promql}", f"time={at:.3f}", fail=False))


def exported(selector: str, start: float, end: float) -> dict[tuple, list[float]]:
    """Raw samples VictoriaMetrics holds for `selector`: (job, instance) -> sorted timestamps (s)."""
    found: dict[tuple, list[float]] = {}
    for line in vm_get("/api/v1/export", f"match[]={selector}", f"start={start:.0f}", f"end={end:.0f}").splitlines():
        series = json.loads(line)
        key = (series["metric"].get("job"), series["metric"].get("instance"))
        found.setdefault(key, []).extend(stamp / 1000 for stamp in series["timestamps"])
    return {key: sorted(stamps) for key, stamps in found.items()}


def longest_gap(stamps: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without a sample."""
    points = [start] + [stamp for stamp in stamps if start <= stamp <= end] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def notifications(run: str) -> list[dict]:
    """The webhook listener's notifications carrying the bench alert of this run."""
    out = bench_host("ha-vm").check_output("cat /var/lib/webhook-listener/requests.jsonl 2>/dev/null || true")
    found = []
    for line in out.splitlines():
        body = json.loads(line)["body"]
        if isinstance(body, dict) and any(alert["labels"].get("run") == run for alert in body.get("alerts", [])):
            found.append(body)
    return found


def raise_bench_alert(run: str) -> None:
    bench_host("ha-p1").run_expect([0], f"printf 'bench_probe{{run=\"{run}\"}} 1\\n' > {TEXTFILE}.tmp "
                                        f"&& chmod 0644 {TEXTFILE}.tmp && mv {TEXTFILE}.tmp {TEXTFILE}")


def prometheus_ready(name: str) -> bool:
    return bench_host(name).run(f"{CURL} -sf --max-time 5 https://127.0.0.1:9090/-/ready").rc == 0


# --- the pair and its wiring ---------------------------------------------------------------------

def test_the_pair_scrapes_the_same_targets_each_with_its_own_replica_label():
    configs = {name: yaml.safe_load(bench_host(name).file("/etc/prometheus/prometheus.yml").content_string)
               for name in PAIR}
    assert {name: c["global"]["external_labels"]["replica"] for name, c in configs.items()} == \
        {name: name for name in PAIR}
    jobs = {name: sorted((j["job_name"], str(j.get("static_configs"))) for j in c["scrape_configs"])
            for name, c in configs.items()}
    assert jobs["ha-p1"] == jobs["ha-p2"], "both replicas scrape the same targets"
    for name in PAIR:
        up = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1]
              for r in prometheus_query(bench_host(name), "up")}
        assert up.get(("victoriametrics", "ha-vm")) == "1", (name, up)
        assert {instance for (job, instance) in up if job == "node"} == NODES, (name, up)
        assert set(up.values()) == {"1"}, (name, up)


def test_every_prometheus_sends_to_every_alertmanager():
    for name in PAIR:
        answer = json.loads(bench_host(name).check_output(f"{CURL} -sf https://127.0.0.1:9090/api/v1/alertmanagers"))
        urls = sorted(a["url"] for a in answer["data"]["activeAlertmanagers"])
        assert urls == [f"https://{peer}:9093/api/v2/alerts" for peer in PAIR], (name, urls)


def test_every_prometheus_writes_to_victoriametrics_over_https_with_its_password_in_a_file():
    _, password = scrape_credentials()
    for name in PAIR:
        host = bench_host(name)
        config = host.file("/etc/prometheus/prometheus.yml").content_string
        assert password not in config
        (entry,) = yaml.safe_load(config)["remote_write"]
        assert entry["url"] == "https://ha-vm:8428/api/v1/write"
        assert entry["basic_auth"]["username"] == "prometheus" and "password" not in entry["basic_auth"]
        assert entry["tls_config"]["ca_file"] == "/etc/monstack/tls/ca.crt"
        assert entry["write_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
        secret = host.file(entry["basic_auth"]["password_file"])
        assert (secret.user, secret.group, oct(secret.mode)) == ("root", "prometheus", "0o640")
        own = f'remote_name="ha-vm",instance="{name}"'
        sent = prometheus_query(host, f'prometheus_remote_storage_samples_total{{{own}}}')
        failed = prometheus_query(host, f'prometheus_remote_storage_samples_failed_total{{{own}}}')
        assert float(sent[0]["value"][1]) > 0 and float(failed[0]["value"][1]) == 0, (name, sent, failed)


# --- VictoriaMetrics itself ----------------------------------------------------------------------

def test_victoriametrics_answers_https_only_and_only_to_the_stack_s_user():
    host = bench_host("ha-vm")
    url = "https://127.0.0.1:8428/api/v1/query?query=up"
    clear = host.run("curl -s --max-time 5 -o /dev/null -w '%{http_code}' "
                     "http://127.0.0.1:8428/api/v1/query?query=up").stdout
    assert clear in ("000", "400"), f"clear text answered {clear}"
    assert host.run(f"curl -s --max-time 5 -o /dev/null {url}").rc != 0, "an unknown CA is refused"
    anonymous = host.check_output(f"curl -s --cacert /etc/monstack/tls/ca.crt -o /dev/null -w '%{{http_code}}' {url}")
    wrong = host.check_output(f"curl -s --cacert /etc/monstack/tls/ca.crt -u prometheus:wrong -o /dev/null "
                              f"-w '%{{http_code}}' {url}")
    right = host.check_output(f"{CURL} -s -o /dev/null -w '%{{http_code}}' {url}")
    assert (anonymous, wrong, right) == ("401", "401", "200")


def test_victoriametrics_runs_hardened_with_its_password_out_of_every_process_list_and_unit():
    host = bench_host("ha-vm")
    _, password = scrape_credentials()
    exposure, report = unit_exposure(host, "victoriametrics.service")
    assert exposure <= 2.0, report
    print(f"victoriametrics.service exposure {exposure}")
    assert password not in host.check_output("ps -eo args")
    # The server logs its flags at start, masking the password's; the user is logged as given.
    logged = host.check_output("journalctl -u victoriametrics --no-pager")
    assert password not in logged and '-httpAuth.username="prometheus"' in logged, logged[-3000:]
    units = host.check_output("cat /etc/systemd/system/victoriametrics.service")
    assert password not in units and "EnvironmentFile=/etc/victoriametrics/secrets.env" in units
    secrets = host.file("/etc/victoriametrics/secrets.env")
    assert (secrets.user, secrets.group, oct(secrets.mode)) == ("root", "root", "0o600")
    readable = host.run(f"grep -rlsF -- {shlex.quote(password)} /etc /var/lib /usr/local /tmp /run").stdout.split()
    for path in readable:
        mode = int(host.check_output(f"stat -c %a {shlex.quote(path)}"), 8)
        assert not mode & 0o004, f"{path} holds the password and is world-readable"
    pid = host.check_output("systemctl show -p MainPID --value victoriametrics")
    status = host.file(f"/proc/{pid}/status").content_string
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert host.check_output(f"stat -c %U /proc/{pid}") == "victoriametrics"


def test_retention_and_deduplication_follow_the_inventory():
    host = bench_host("ha-vm")
    pid = host.check_output("systemctl show -p MainPID --value victoriametrics")
    args = host.file(f"/proc/{pid}/cmdline").content.split(b"\0")
    assert b"-retentionPeriod=12" in args, args
    assert f"-dedup.minScrapeInterval={INTERVAL}s".encode() in args, args


def test_victoriametrics_holds_one_deduplicated_series_per_target():
    def series():
        answer = json.loads(vm_get("/api/v1/series", 'match[]=up{job="node"}', f"start={time.time() - 300:.0f}"))
        return answer["data"] if {s.get("instance") for s in answer["data"]} == NODES else None
    found = wait_until(series, timeout=90, interval=5, what="every node target in VictoriaMetrics")
    assert sorted(s["instance"] for s in found) == sorted(NODES), f"one series per target, not per replica: {found}"
    assert not [s for s in found if "replica" in s], found
    # Both replicas scraped each target every 15 s over those two minutes; VictoriaMetrics keeps one
    # sample per 15 s of a series, so it holds about as many as one replica does.
    promql = 'count_over_time(up{job="node",instance="ha-vm"}[2m])'

    def replicas():
        """Two minutes of samples in both replicas (the bench may have started a minute ago)."""
        at = time.time() - SETTLED
        results = [prometheus_query(bench_host(name), promql, at=at) for name in PAIR]
        counts = [float(result[0]["value"][1]) if result else 0.0 for result in results]
        return (at, counts) if min(counts) >= 7 else None
    at, counts = wait_until(replicas, timeout=240, interval=10, what="two minutes of samples in both replicas")
    stored = float(vm_query(promql, at)["data"]["result"][0]["value"][1])
    assert 6 <= stored <= 120 / INTERVAL + 1, f"VictoriaMetrics holds {stored} samples, the replicas {counts}"


def test_victoriametrics_answers_range_queries_over_the_stored_data():
    def stored():
        end = time.time() - SETTLED
        answer = json.loads(vm_get("/api/v1/query_range", 'query=up{job="prometheus"}', f"start={end - 120:.0f}",
                                   f"end={end:.0f}", f"step={INTERVAL}s"))
        assert answer["status"] == "success" and answer["data"]["resultType"] == "matrix", answer
        values = {r["metric"]["instance"]: [v for _, v in r["values"]] for r in answer["data"]["result"]}
        # Points every 15 s over 2 minutes; one may find no sample within its lookback where the kept
        # sample of a deduplication interval moved from one replica to the other.
        full = sorted(values) == sorted(PAIR) and all(len(v) >= 120 / INTERVAL / 2 for v in values.values())
        return values if full else None
    values = wait_until(stored, timeout=180, interval=10, what="two minutes of both replicas' up in a range query")
    assert all(set(v) == {"1"} for v in values.values()), values


def _dashboard_expressions() -> list[str]:
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.add(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    for path in DASHBOARDS.rglob("*.json"):
        walk(json.loads(path.read_text()))
    return sorted(found)


def test_the_dashboards_work_against_victoriametrics_as_against_prometheus():
    """Every dashboard expression, with its variables on All as a dashboard opens: VictoriaMetrics
    accepts each, and returns data for every one the Prometheus replica answers with data."""
    at = time.time() - SETTLED
    refused, missing = {}, []
    expressions = _dashboard_expressions()
    for expr in expressions:
        promql = re.sub(r"\$(\w+)", ".+", expr)
        stored = vm_query(promql, at)
        if stored.get("status") != "success":
            refused[expr] = stored.get("error")
            continue
        if prometheus_query(bench_host("ha-p1"), promql, at=at) and not stored["data"]["result"]:
            missing.append(expr)
    assert refused == {}, f"VictoriaMetrics refuses dashboard expressions: {refused}"
    assert missing == [], f"data in Prometheus but not in VictoriaMetrics: {missing}"
    assert len(expressions) > 50


# --- a replica down, VictoriaMetrics down ----------------------------------------------------------

def test_with_one_prometheus_stopped_an_alert_arrives_once_and_victoriametrics_keeps_receiving():
    p2 = bench_host("ha-p2")
    run = f"r{int(time.time())}"
    stopped = time.time()
    p2.run_expect([0], "systemctl stop prometheus")
    try:
        raise_bench_alert(run)
        wait_until(lambda: notifications(run), timeout=120, interval=3, what="the bench alert at the receiver")
        # The other Alertmanager's turn comes a peer timeout (15 s) later; a duplicate would come then.
        time.sleep(30)
        delivered = notifications(run)
        assert len(delivered) == 1, f"{len(delivered)} notifications for one group: {delivered}"
        (alert,) = [a for a in delivered[0]["alerts"] if a["labels"].get("run") == run]
        assert "replica" not in alert["labels"] and alert["labels"]["instance"] == "ha-p1", alert
        time.sleep(max(0.0, stopped + 4 * INTERVAL + SETTLED - time.time()))
        samples = exported('up{job="node"}', stopped - 60, time.time())
        for instance in NODES:
            stamps = samples.get(("node", instance), [])
            gap = longest_gap(stamps, stopped - INTERVAL, time.time() - SETTLED)
            assert gap <= 2 * INTERVAL, f"{instance}: {gap:.0f}s without a sample since ha-p2 stopped: {stamps}"
    finally:
        bench_host("ha-p1").run(f"rm -f {TEXTFILE}")
        p2.run_expect([0], "systemctl start prometheus")
        wait_until(lambda: prometheus_ready("ha-p2"), timeout=90, interval=2, what="ha-p2's Prometheus ready")


def test_samples_taken_while_victoriametrics_was_stopped_arrive_from_the_write_ahead_log():
    vm = bench_host("ha-vm")
    stopped = time.time()
    vm.run_expect([0], "systemctl stop victoriametrics")
    try:
        time.sleep(75)
    finally:
        vm.run_expect([0], "systemctl start victoriametrics")
    started = time.time()
    wait_until(lambda: vm.run("curl -sf --cacert /etc/monstack/tls/ca.crt https://127.0.0.1:8428/health").rc == 0,
               timeout=60, interval=2, what="VictoriaMetrics healthy again")
    window = (stopped - 2 * INTERVAL, started + 2 * INTERVAL)

    def caught_up():
        samples = exported('up{job="node"}', window[0] - 60, time.time())
        return samples if all(max(samples.get(("node", i), [0])) >= window[1] for i in NODES) else None
    samples = wait_until(caught_up, timeout=120, interval=5, what="the queues caught up after the restart")
    for instance in NODES:
        stamps = samples[("node", instance)]
        gap = longest_gap(stamps, *window)
        during = [stamp for stamp in stamps if stopped < stamp < started]
        assert gap <= 2 * INTERVAL and len(during) >= (started - stopped) / INTERVAL - 2, (
            f"{instance}: {gap:.0f}s without a sample around the {started - stopped:.0f}s stop, {len(during)} "
            f"samples from it:\n{journal(bench_host('ha-p1'), 'prometheus', 20)}")


# --- a backup, the data directory lost, a restore ----------------------------------------------------

def node_series_at(at: float) -> set[str]:
    """The instances of the node job VictoriaMetrics answers for at time `at`."""
    return {r["metric"]["instance"] for r in vm_query('up{job="node"}', at)["data"]["result"]}


def vm_healthy() -> bool:
    return bench_host("ha-vm").run(f"{CURL} -sf --max-time 5 {VM}/health").rc == 0


def test_victoriametrics_backup_unit_reaches_loopback_only_and_stays_hardened():
    vm = bench_host("ha-vm")
    unit = "monstack-backup@victoriametrics.service"
    shown = vm.check_output(f"systemctl show -p PrivateNetwork -p IPAddressDeny -p IPAddressAllow {unit}")
    # systemd prints address lists in no fixed order: compare them as sets.
    props = {key: set(value.split()) for key, _, value in (line.partition("=") for line in shown.splitlines())}
    assert props["PrivateNetwork"] == {"no"}, shown
    assert props["IPAddressDeny"] == {"0.0.0.0/0", "::/0"}, shown
    assert props["IPAddressAllow"] == {"127.0.0.0/8", "::1/128"}, shown
    exposure, report = unit_exposure(vm, unit)
    assert exposure <= 2.0, report
    print(f"{unit} exposure {exposure}")
    # The other components' runs keep no network at all.
    other = bench_host("ha-p1").check_output("systemctl show -p PrivateNetwork monstack-backup@prometheus.service")
    assert other == "PrivateNetwork=yes", other


def test_victoriametrics_series_come_back_from_a_backup_after_the_data_directory_is_lost():
    vm = bench_host("ha-vm")
    at = time.time() - SETTLED
    before = node_series_at(at)
    assert before == NODES, before
    result = vm.run("systemctl start monstack-backup@victoriametrics.service")
    assert result.rc == 0, journal(vm, "monstack-backup@victoriametrics.service")
    metrics = vm.check_output("cat /var/lib/node_exporter/textfile/monstack_backup_victoriametrics.prom")
    assert 'monstack_backup_last_run_success{backup="victoriametrics"} 1' in metrics, metrics
    assert json.loads(vm_get("/snapshot/list"))["snapshots"] == [], "the run left its snapshot behind"

    # What a lost disk leaves: the server running again on an empty data directory.
    vm.run_expect([0], "systemctl stop victoriametrics && rm -rf /var/lib/victoriametrics/data/* "
                       "&& systemctl start victoriametrics")
    wait_until(vm_healthy, timeout=60, interval=2, what="VictoriaMetrics healthy on an empty data directory")
    assert node_series_at(at) == set(), "the series outlived their data directory"

    run = run_playbook("playbooks/restore.yml",
                       extra_vars={"restore_host": "ha-vm", "restore_component": "victoriametrics"})
    assert run.rc == 0, run.tail()
    assert node_series_at(at) == before, journal(vm, "victoriametrics")
    assert vm.file("/var/lib/victoriametrics/data").user == "victoriametrics"
    assert vm.run("ls -d /var/lib/victoriametrics/data.pre-restore-*").rc == 0


# --- the operator's runs ----------------------------------------------------------------------------

def test_a_dry_run_with_diff_of_the_converged_hosts_changes_nothing_and_shows_no_secret():
    assert_dry_run_changes_nothing(secrets=(scrape_credentials()[1],))