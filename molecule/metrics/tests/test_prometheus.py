"""The metrics core as an operator checks it: every target up, rules loaded, the alert path works end
to end (Prometheus -> both Alertmanagers -> receiver), and a bad edit leaves the running Prometheus alone."""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid

import pytest
import testinfra
from bench_checks import (CURL, INVENTORY, REPO, assert_dry_run_changes_nothing, assert_refused_before_any_change,
                          assert_validation_refuses, hosts, run_playbook, unit_exposure, wait_until)

testinfra_hosts = hosts("prometheus")

PROM = "https://127.0.0.1:9090"
ALERTMANAGERS = ["m-am1", "m-am2"]
EVERY_HOST = ["m-am1", "m-am2", "m-prom"]
# alertmanager_group_interval in molecule.yml: how long a group waits before it notifies again.
GROUP_INTERVAL_SECONDS = 15


def api(host, path: str, **params) -> dict:
    """GET a Prometheus or Alertmanager API path on `host` and return the decoded JSON."""
    query = " ".join(f"--data-urlencode {shlex.quote(f'{key}={value}')}" for key, value in params.items())
    out = host.check_output(f"{CURL} -sfG --max-time 5 {query} {shlex.quote(path)}")
    return json.loads(out)


def instant(host, promql: str) -> list:
    return api(host, f"{PROM}/api/v1/query", query=promql)["data"]["result"]


@pytest.fixture(scope="module")
def targets_up(host):
    """Wait (bounded) until Prometheus has scraped every target once, then return the targets."""
    def all_scraped():
        active = api(host, f"{PROM}/api/v1/targets", state="active")["data"]["activeTargets"]
        return active if active and all(t["health"] != "unknown" for t in active) else None
    return wait_until(all_scraped, timeout=90, interval=3, what="every target scraped once")


def test_prometheus_runs_as_its_own_user_and_is_ready(host):
    service = host.service("prometheus")
    assert service.is_running and service.is_enabled
    assert host.process.get(comm="prometheus").user == "prometheus"
    assert host.run(f"{CURL} -sf {PROM}/-/ready").rc == 0


def scraped(targets: list) -> list:
    """Targets Prometheus scrapes itself (probe jobs ask the blackbox exporter instead)."""
    return [target for target in targets if not target["labels"]["job"].startswith("blackbox_")]


def test_every_inventory_target_is_scraped_and_up(host, targets_up):
    by_job: dict[str, set[str]] = {}
    for target in scraped(targets_up):
        by_job.setdefault(target["labels"]["job"], set()).add(target["labels"]["instance"])
    assert by_job == {
        "node": set(EVERY_HOST),
        "alertmanager": set(ALERTMANAGERS),
        "blackbox": {"m-am1"},
        "prometheus": {"m-prom"},
    }, f"jobs and instances derived from the inventory: {by_job}"
    down = [(t["labels"]["job"], t["labels"]["instance"], t["lastError"]) for t in targets_up if t["health"] != "up"]
    assert not down, f"targets down: {down}"


def test_probes_find_the_live_endpoint_up_the_closed_port_down_and_every_host_pingable(host):
    def results():
        found = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1]
                 for r in instant(host, 'probe_success{job!="blackbox_tls_stack"}')}
        return found if len(found) == 2 + len(EVERY_HOST) else None
    found = wait_until(results, timeout=90, interval=3, what="a result of every probe")
    assert found[("blackbox_http_2xx", "http://m-prom:9999/")] == "1", found
    assert found[("blackbox_tcp_connect", "m-am2:9999")] == "0", found
    assert [found[("blackbox_icmp", name)] for name in EVERY_HOST] == ["1"] * len(EVERY_HOST), found


def test_a_failing_probe_raises_probe_failed_for_its_target_only(host):
    def probe_alerts():
        alerts = api(host, f"{PROM}/api/v1/alerts")["data"]["alerts"]
        return [a["labels"]["instance"] for a in alerts if a["labels"]["alertname"] == "ProbeFailed"] or None
    instances = wait_until(probe_alerts, timeout=90, interval=3, what="ProbeFailed pending or firing")
    assert instances == ["m-am2:9999"], f"ProbeFailed for {instances}"


def test_instance_label_is_the_inventory_host_name(host, targets_up):
    for target in scraped(targets_up):
        assert ":" not in target["labels"]["instance"], f"instance keeps the port: {target['labels']}"
        assert target["scrapeUrl"].startswith(f"https://{target['labels']['instance']}:")


def test_series_carry_the_environment_and_replica_labels(host):
    config = api(host, f"{PROM}/api/v1/status/config")["data"]["yaml"]
    assert "environment: bench" in config and "replica: m-prom" in config, config[:600]


def library_groups() -> set[str]:
    """The rule groups of every file of the library (roles/prometheus/templates/rules/), none disabled here."""
    return {match for path in sorted((REPO / "roles/prometheus/templates/rules").glob("*.rules.yml.j2"))
            for match in re.findall(r"^  - name: (\S+)$", path.read_text(), re.M)}


def test_the_rule_library_is_loaded_whole_and_every_rule_evaluates(host):
    expected = library_groups()
    assert len(expected) >= 12, expected

    def healthy():
        groups = api(host, f"{PROM}/api/v1/rules")["data"]["groups"]
        loaded = {group["name"] for group in groups if group["file"].endswith("/monstack.rules.yml")}
        assert loaded == expected, f"library groups not loaded: {expected - loaded}; unexpected: {loaded - expected}"
        broken = [(rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"]
                  if rule.get("health") == "err"]
        assert not broken, f"rules failing to evaluate: {broken}"
        # "unknown" until a rule's first evaluation: every one must have run, and run cleanly.
        return all(rule.get("health") == "ok" for group in groups for rule in group["rules"])
    wait_until(healthy, timeout=90, interval=5, what="every rule of the library evaluated, health ok")


def test_prometheus_sends_to_every_alertmanager(host):
    def discovered():
        active = api(host, f"{PROM}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        return sorted(am["url"].split("/")[2].split(":")[0] for am in active) == ALERTMANAGERS
    wait_until(discovered, timeout=30, interval=2, what="both Alertmanagers known to Prometheus")


@pytest.mark.parametrize("alertmanager", ALERTMANAGERS)
def test_watchdog_reaches_every_alertmanager_without_the_replica_label(host, alertmanager):
    def watchdog():
        alerts = api(host, f"https://{alertmanager}:9093/api/v2/alerts", filter='alertname="Watchdog"')
        return alerts[0]["labels"] if alerts else None
    labels = wait_until(watchdog, timeout=90, interval=3, what=f"Watchdog on {alertmanager}")
    assert labels["environment"] == "bench"
    assert "replica" not in labels, f"replica must be dropped so replicas deduplicate: {labels}"


def received_alerts(host) -> list[tuple[str, dict]]:
    """Every alert of every notification at the bench webhook listener, with the path it was posted to."""
    log = host.run("cat /var/lib/webhook-listener/requests.jsonl").stdout
    posts = [json.loads(line) for line in log.splitlines() if line.strip()]
    return [(post["path"], alert) for post in posts if isinstance(post["body"], dict)
            for alert in post["body"].get("alerts", [])]


def test_watchdog_arrives_at_the_receiver(host):
    def received():
        return [alert for path, alert in received_alerts(host)
                if path == "/watchdog" and alert["labels"].get("alertname") == "Watchdog"]
    wait_until(received, timeout=120, interval=5, what="a Watchdog notification at the webhook listener")


def delivered(host, alertname: str, instance: str, status: str = "firing") -> list[dict]:
    return [alert for path, alert in received_alerts(host) if path == "/hook" and alert["status"] == status
            and alert["labels"].get("alertname") == alertname and alert["labels"].get("instance") == instance]


def test_a_real_critical_twin_is_delivered_and_silences_its_warning(host):
    """m-am2's certificate is issued for 5 days: the library's SSLCertificateExpiryCritical (under 7
    days) and its warning twin SSLCertificateExpiringSoon (under 30) both fire in Prometheus. Only the
    critical reaches the webhook; each Alertmanager holds the warning as inhibited by it."""
    twins = ("SSLCertificateExpiryCritical", "SSLCertificateExpiringSoon")

    def both_firing():
        alerts = api(host, f"{PROM}/api/v1/alerts")["data"]["alerts"]
        return all(any(a["labels"]["alertname"] == name and a["labels"]["instance"] == "m-am2:9093"
                       and a["state"] == "firing" for a in alerts) for name in twins)
    wait_until(both_firing, timeout=150, interval=5, what="both certificate twins firing for m-am2:9093")
    wait_until(lambda: delivered(host, twins[0], "m-am2:9093"), timeout=90, interval=3,
               what="SSLCertificateExpiryCritical for m-am2:9093 at the webhook")
    for alertmanager in ALERTMANAGERS:
        def inhibited():
            found = api(host, f"https://{alertmanager}:9093/api/v2/alerts", filter=f'alertname="{twins[1]}"')
            return [a for a in found if a["labels"]["instance"] == "m-am2:9093" and a["status"]["inhibitedBy"]]
        wait_until(inhibited, timeout=30, interval=2, what=f"{twins[1]} inhibited on {alertmanager}")
    # The warning's group was flushed with the critical's (same group_wait): held back, not late.
    time.sleep(GROUP_INTERVAL_SECONDS)
    assert not delivered(host, twins[1], "m-am2:9093"), "the warning twin was delivered beside its critical"


def post_alerts(host, alerts: list[dict]) -> None:
    """Post alerts to every Alertmanager, as Prometheus does."""
    body = shlex.quote(json.dumps(alerts))
    for alertmanager in ALERTMANAGERS:
        host.check_output(f"{CURL} -sf --max-time 5 -H 'Content-Type: application/json' -d {body} "
                          f"https://{alertmanager}:9093/api/v2/alerts")


def test_every_twin_pair_of_the_loaded_library_inhibits_until_its_critical_resolves(host):
    """Both twins of every pair the running Prometheus loaded (alert name, severity and problem label
    as the rules set them) posted for one instance each: only the criticals are delivered; once a
    critical resolves, its warning is."""
    groups = api(host, f"{PROM}/api/v1/rules", type="alert")["data"]["groups"]
    pairs: dict[str, dict[str, dict]] = {}
    for rule in (rule for group in groups for rule in group["rules"]):
        if "problem" in rule["labels"]:
            pairs.setdefault(rule["labels"]["problem"], {})[rule["labels"]["severity"]] = rule
    assert len(pairs) >= 6 and all(set(twins) == {"critical", "warning"} for twins in pairs.values()), pairs
    marker = uuid.uuid4().hex[:6]
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 900))

    def alert(problem: str, severity: str, ends_at: str) -> dict:
        rule = pairs[problem][severity]
        return {"labels": {"alertname": rule["name"], **rule["labels"], "instance": f"inhibit-{marker}-{problem}"},
                "annotations": {"summary": "inhibition bench"}, "endsAt": ends_at}
    post_alerts(host, [alert(problem, severity, ends) for problem in pairs for severity in ("critical", "warning")])

    def criticals_delivered():
        return all(delivered(host, pairs[p]["critical"]["name"], f"inhibit-{marker}-{p}") for p in pairs)
    wait_until(criticals_delivered, timeout=60, interval=3, what="every critical twin at the webhook")
    time.sleep(GROUP_INTERVAL_SECONDS)
    early = [p for p in pairs if delivered(host, pairs[p]["warning"]["name"], f"inhibit-{marker}-{p}")]
    assert not early, f"warnings delivered while their critical twin fired: {early}"

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    post_alerts(host, [alert(problem, "critical", now) for problem in pairs])

    def warnings_delivered():
        return all(delivered(host, pairs[p]["warning"]["name"], f"inhibit-{marker}-{p}") for p in pairs)
    wait_until(warnings_delivered, timeout=4 * GROUP_INTERVAL_SECONDS, interval=3,
               what="every warning twin at the webhook once its critical resolved")
    post_alerts(host, [alert(problem, "warning", now) for problem in pairs])


def test_unit_is_hardened(host):
    exposure, report = unit_exposure(host, "prometheus.service")
    assert exposure <= 2.0, report


def test_blackbox_exporter_keeps_only_cap_net_raw_and_stays_hardened():
    prober = testinfra.get_host(f"ansible://m-am1?ansible_inventory={INVENTORY}")
    exposure, report = unit_exposure(prober, "blackbox_exporter.service")
    assert exposure <= 2.0, report
    pid = prober.check_output("systemctl show -p MainPID --value blackbox_exporter")
    status = prober.check_output(f"grep -E '^(Uid|CapEff):' /proc/{pid}/status")
    assert "CapEff:\t0000000000002000" in status, f"expected CAP_NET_RAW only, got:\n{status}"
    assert status.split("Uid:")[1].split()[0] != "0", "blackbox_exporter runs as root"


def test_configuration_files_are_not_world_readable(host):
    for path in ("/etc/prometheus/prometheus.yml", "/etc/prometheus/rules/monstack.rules.yml"):
        config = host.file(path)
        assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640), path


def test_dry_run_of_converged_hosts_reports_no_change():
    assert_dry_run_changes_nothing()


BAD_PROBES = [
    pytest.param([{"module": "http_3xx", "targets": ["https://shop.test/"]}], "not a module of the blackbox exporter",
                 id="unknown-module"),
    pytest.param([{"module": "http_2xx", "targets": ["shop.test"]}], "must be a URL", id="target-without-scheme"),
]


@pytest.mark.parametrize(("probes", "message"), BAD_PROBES)
def test_bad_probe_input_fails_before_anything_changes(host, probes, message):
    assert_refused_before_any_change(host, {"prometheus_probes": probes}, message, limit="m-prom")


BROKEN_EDITS = [
    pytest.param({"prometheus_rules_extra": {"team": [{"name": "team", "rules": [
        {"alert": "Broken", "expr": "rate(http_requests_total[5m] > 1"}]}]}}, "rules", id="broken-rule"),
    pytest.param({"prometheus_scrape_configs_extra": [
        {"job_name": "app", "scrape_interval": "often", "static_configs": [{"targets": ["app:8080"]}]}]},
        "prometheus.yml", id="broken-scrape-config"),
]


@pytest.mark.parametrize(("extra_vars", "file"), BROKEN_EDITS)
def test_broken_edit_fails_at_validation_and_prometheus_keeps_serving(host, extra_vars, file):
    reloaded_at = instant(host, "prometheus_config_last_reload_success_timestamp_seconds")[0]["value"][1]
    assert_validation_refuses("m-prom", "prometheus", extra_vars)
    assert instant(host, "prometheus_config_last_reload_success_timestamp_seconds")[0]["value"][1] == reloaded_at
    # Still scraping: every node target has a fresh sample.
    fresh = instant(host, 'time() - timestamp(up{job="node"}) < 60')
    assert len(fresh) == len(EVERY_HOST), f"targets with a sample younger than 60s: {fresh}"


def test_a_refused_file_leaves_no_change_before_it_unapplied(host):
    # One run changes a rule file (valid) and prometheus.yml (refused by promtool, written after it):
    # the rule file's change still reaches its handler, so Prometheus reloads it, and the play fails.
    config = host.file("/etc/prometheus/prometheus.yml").content_string
    given = {"prometheus_rule_thresholds_override": {"cpu_warning_percent": 81},
             "prometheus_scrape_configs_extra": [{"job_name": "app", "scrape_interval": "often",
                                                 "static_configs": [{"targets": ["app:8080"]}]}]}
    def high_cpu_rule():
        groups = api(host, f"{PROM}/api/v1/rules", type="alert")["data"]["groups"]
        return [rule["query"] for group in groups for rule in group["rules"] if rule["name"] == "HighCPUUsage"]
    assert any(query.endswith("> 80") for query in high_cpu_rule()), high_cpu_rule()
    try:
        run = run_playbook("playbooks/prometheus.yml", "-e", json.dumps(given), limit="m-prom")
        assert run.rc != 0 and "failed to validate" in run.output, run.tail()
        assert host.file("/etc/prometheus/prometheus.yml").content_string == config
        wait_until(lambda: any(query.endswith("> 81") for query in high_cpu_rule()), timeout=30,
                   what="Prometheus evaluating HighCPUUsage at the new threshold")
    finally:
        back = run_playbook("playbooks/prometheus.yml", limit="m-prom")
        assert back.rc == 0, back.tail()
