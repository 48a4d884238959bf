"""The rule library (roles/prometheus/templates/rules/): rendered by Ansible as the role renders it,
accepted by promtool, and proven by promtool unit tests (tests/rules/*.test.yml) to fire when it should
and to stay silent just short of its thresholds. Also: every alert is documented, tested, and has a
runbook; the role's rule variables do what they say.

promtool comes from Debian's prometheus package: `make .venv/bin/promtool`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO_ROOT, playbook_command, playbook_env

PROMTOOL = BIN / "promtool"
RENDER_PLAYBOOK = REPO_ROOT / "tests" / "rules" / "render.yml"
TEMPLATES = REPO_ROOT / "roles" / "prometheus" / "templates" / "rules"
RULE_TESTS = sorted((REPO_ROOT / "tests" / "rules").glob("*.test.yml"))
RUNBOOKS = REPO_ROOT / "docs" / "runbooks"
RUNBOOK_SECTIONS = ("## What it means", "## Impact", "## First checks", "## Fixes", "## Escalate")
# Alerts evaluated by Loki's ruler (roles/loki), not Prometheus: their runbooks live here too, and are
# checked in tests/unit/test_log_configs.py.
LOKI_RULER_ALERTS = set(re.findall(r"^\s*- alert: (\w+)", (REPO_ROOT / "roles" / "loki" / "templates"
                                                          / "monstack.rules.yml.j2").read_text(), re.M))

# Alerts DESIGN.md ("Alerts named in the seeds") names, spelled as it spells them. Where it gives two
# names for one alert, the library has one of them: DatabaseDown / PostgreSQLDown (pg_up == 0).
DESIGN_NAMED = {
    "HighErrorRate", "CriticalErrorRate", "HighLatency", "HighResponseTime", "ServiceDown", "TargetDown",
    "PostgreSQLDown", "RedisDown", "MongoDBDown", "NginxDown", "HighCPUUsage", "CriticalCPUUsage",
    "HighMemoryUsage", "CriticalMemoryUsage", "DiskSpaceLow", "CriticalDiskSpace", "LowCacheHitRate",
    "SSLCertificateExpiringSoon", "BruteForceAttempt", "SuspiciousActivity", "WebSocketDisconnectSpike",
    "HighMessageVolume", "Watchdog",
}
# Alerts DESIGN.md describes without naming them, by the names this library gives them.
DESIGN_DESCRIBED = {
    "database connections near max": {"DatabaseConnectionsNearMax"},
    "certificate expiry, critical level": {"SSLCertificateExpiryCritical"},
    "rate-limit hits": {"RateLimitHits"},
    "config reload failures": {"PrometheusConfigReloadFailed", "AlertmanagerConfigReloadFailed"},
    "rule evaluation failures": {"PrometheusRuleEvaluationFailures"},
    "notifications failing": {"PrometheusNotificationsFailing", "PrometheusNotConnectedToAlertmanagers",
                              "AlertmanagerNotificationsFailing"},
    "backups too old": {"BackupTooOld", "BackupFailed"},
    # The guides (../shared/seeds/) beyond DESIGN.md: the chat platform's sign-ups, the warehouse's scan
    # endpoint, and the generic guide's process CPU and memory (named after the host alerts there).
    "chat registrations per second": {"HighUserRegistration"},
    "p95 of /api/scan": {"HighScanLatency"},
    "application process CPU and memory": {"ProcessHighCPUUsage", "ProcessHighMemoryUsage"},
}

# One rendering with non-default rule variables, to show that each of them takes effect.
VARIANT = {
    "prometheus_rule_files_disabled": ["application"],
    "prometheus_rule_thresholds_override": {"cpu_warning_percent": 90, "cpu_warning_for": "10m"},
    "prometheus_runbook_url_base": "https://git.example.test/ops/monstack/-/blob/main/docs/runbooks",
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert PROMTOOL.is_file(), (
        f"{PROMTOOL} is missing. Prometheus is not on PyPI; take promtool from Debian's package with "
        "`make .venv/bin/promtool` (in the repository root)"
    )
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def _start_render(out: Path, extra_vars: dict) -> subprocess.Popen:
    """Start tests/rules/render.yml rendering into `out`; its output goes to out.log."""
    command = playbook_command(RENDER_PLAYBOOK, {"rules_out": str(out), **extra_vars})
    with out.with_suffix(".log").open("w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=playbook_env(out.parent))


def _finish_render(process: subprocess.Popen, out: Path) -> Path:
    returncode = process.wait(timeout=300)
    log = out.with_suffix(".log").read_text()
    assert returncode == 0, f"rendering the rule library failed ({' '.join(process.args)}):\n{log[-4000:]}"
    return out


@pytest.fixture(scope="session")
def renders(tmp_path_factory) -> dict[str, Path]:
    """The library rendered with the defaults, and with VARIANT; both at once, as each run spends most
    of its time starting Ansible."""
    base = tmp_path_factory.mktemp("rules")
    outs = {"default": base / "default", "variant": base / "variant"}
    started = {name: _start_render(outs[name], VARIANT if name == "variant" else {}) for name in outs}
    return {name: _finish_render(process, outs[name]) for name, process in started.items()}


@pytest.fixture(scope="session")
def rendered(renders) -> Path:
    return renders["default"]


def rule_files(directory: Path) -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.rules.yml"))}


def rules_of(directory: Path, kind: str) -> dict[str, list[dict]]:
    """Rule name (alert or record) -> its rules; one alert may have several rules (LowCacheHitRate)."""
    found: dict[str, list[dict]] = {}
    for content in rule_files(directory).values():
        for group in content["groups"]:
            for rule in group["rules"]:
                if kind in rule:
                    found.setdefault(rule[kind], []).append(rule)
    return found


def rule_tests() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in RULE_TESTS}


def test_every_rule_template_renders_to_a_rule_file_that_promtool_accepts(rendered):
    templates = sorted(path.name.removesuffix(".j2") for path in TEMPLATES.glob("*.rules.yml.j2"))
    assert sorted(rule_files(rendered)) == templates
    checked = promtool("check", "rules", *(str(rendered / name) for name in templates))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(rendered, test_file):
    # rule_files in the test files name the rendered files, relative to the test file's directory.
    shutil.copy(test_file, rendered / test_file.name)
    result = promtool("test", "rules", test_file.name, cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_has_promtool_tests(rendered):
    tested = {name for content in rule_tests().values() for name in content.get("rule_files", [])}
    untested = sorted(set(rule_files(rendered)) - tested)
    assert not untested, f"no tests/rules/*.test.yml names these in rule_files: {untested}"


def test_every_alert_named_in_the_design_exists(rendered):
    alerts = set(rules_of(rendered, "alert"))
    missing = sorted(DESIGN_NAMED - alerts)
    assert not missing, f"alerts named in DESIGN.md but not in the rule library: {missing}"
    undescribed = {what: sorted(names - alerts) for what, names in DESIGN_DESCRIBED.items() if names - alerts}
    assert not undescribed, f"alerts DESIGN.md asks for but the rule library lacks: {undescribed}"


def test_every_alert_is_shown_firing_and_staying_silent_by_a_promtool_test(rendered):
    firing, silent = set(), set()
    for content in rule_tests().values():
        for case in content["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(rules_of(rendered, "alert"))
    assert not alerts - firing, f"no promtool case shows these alerts firing: {sorted(alerts - firing)}"
    # The Watchdog is the exception: it must always fire.
    never_silent = sorted(alerts - silent - {"Watchdog"})
    assert not never_silent, f"no promtool case shows these alerts staying silent: {never_silent}"


def test_every_recording_rule_is_checked_by_a_promtool_expression_test(rendered):
    expressions = " ".join(check["expr"] for content in rule_tests().values() for case in content["tests"]
                           for check in case.get("promql_expr_test", []))
    unchecked = sorted(name for name in rules_of(rendered, "record") if name not in expressions)
    assert not unchecked, f"no promql_expr_test evaluates these recording rules: {unchecked}"


def test_every_alert_has_severity_summary_description_and_runbook_url(rendered):
    problems = []
    for name, rules in rules_of(rendered, "alert").items():
        for rule in rules:
            severity = rule.get("labels", {}).get("severity")
            allowed = ("none",) if name == "Watchdog" else ("critical", "warning", "info")
            if severity not in allowed:
                problems.append(f"{name}: severity {severity!r}, expected one of {allowed}")
            annotations = rule.get("annotations", {})
            problems += [f"{name}: no {key}" for key in ("summary", "description") if not annotations.get(key)]
            if annotations.get("runbook_url") != f"docs/runbooks/{name}.md":
                problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r}")
    assert not problems, problems


def test_every_alert_has_a_runbook_page_listed_in_the_index(rendered):
    alerts = set(rules_of(rendered, "alert"))
    problems = []
    for name in sorted(alerts):
        page = RUNBOOKS / f"{name}.md"
        if not page.is_file():
            problems.append(f"{page.relative_to(REPO_ROOT)} is missing")
            continue
        text = page.read_text()
        problems += [f"{page.name} has no '{section}'" for section in RUNBOOK_SECTIONS if section not in text]
    index = (RUNBOOKS / "README.md").read_text()
    problems += [f"README.md does not link {name}.md" for name in sorted(alerts) if f"({name}.md)" not in index]
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    problems += [f"{name}.md is the runbook of no alert" for name in sorted(pages - alerts - LOKI_RULER_ALERTS)]
    assert not problems, problems


def test_runbook_pages_and_index_state_the_alerts_severity(rendered):
    problems = []
    index = (RUNBOOKS / "README.md").read_text()
    for name, rules in sorted(rules_of(rendered, "alert").items()):
        severities = "/".join(sorted({rule["labels"]["severity"] for rule in rules}))
        page = RUNBOOKS / f"{name}.md"
        if severities == "none" or not page.is_file():  # a missing page is the previous test's finding
            continue
        if f"Severity: **{severities}**" not in page.read_text():
            problems.append(f"{name}.md does not say 'Severity: **{severities}**'")
        if f"| [{name}]({name}.md) | {severities} |" not in index:
            problems.append(f"README.md's row of {name} does not give severity {severities}")
    assert not problems, problems


def test_a_disabled_rule_file_is_not_rendered(renders):
    names = sorted(rule_files(renders["variant"]))
    assert "application.rules.yml" not in names, names
    assert "node.rules.yml" in names, names
    assert set(rule_files(renders["default"])) - set(names) == {"application.rules.yml"}


def test_a_threshold_override_changes_that_threshold_and_no_other(renders):
    default, variant = rules_of(renders["default"], "alert"), rules_of(renders["variant"], "alert")
    high, critical = variant["HighCPUUsage"][0], variant["CriticalCPUUsage"][0]
    assert high["expr"].endswith("> 90") and high["for"] == "10m", high
    before = default["CriticalCPUUsage"][0]
    assert (critical["expr"], critical["for"]) == (before["expr"], before["for"]), critical
    assert default["HighCPUUsage"][0]["expr"].endswith("> 80"), default["HighCPUUsage"][0]


def test_runbook_urls_start_with_prometheus_runbook_url_base(renders):
    base = VARIANT["prometheus_runbook_url_base"]
    wrong = {name: rule["annotations"]["runbook_url"]
             for name, rules in rules_of(renders["variant"], "alert").items()
             for rule in rules if rule["annotations"]["runbook_url"] != f"{base}/{name}.md"}
    assert not wrong, wrong


# The warning/critical twins of the library: two names for one problem at two levels (issue: the
# critical must silence its warning in Alertmanager, which matches them by their shared `problem` label).
TWINS = {
    "cpu": {"HighCPUUsage", "CriticalCPUUsage"},
    "memory": {"HighMemoryUsage", "CriticalMemoryUsage"},
    "disk_space": {"DiskSpaceLow", "CriticalDiskSpace"},
    "error_rate": {"HighErrorRate", "CriticalErrorRate"},
    "certificate_expiry": {"SSLCertificateExpiringSoon", "SSLCertificateExpiryCritical"},
    "backup": {"BackupFailed", "BackupTooOld"},
}


def problems_of(directory: Path) -> dict[str, dict[str, str]]:
    """problem label -> {alert name: severity}, over the rendered library."""
    found: dict[str, dict[str, str]] = {}
    for name, rules in rules_of(directory, "alert").items():
        for rule in rules:
            labels = rule.get("labels", {})
            if "problem" in labels:
                found.setdefault(labels["problem"], {})[name] = labels["severity"]
    return found


def test_each_warning_critical_twin_pair_shares_one_problem_label_and_no_other_alert_has_it(rendered):
    problems = problems_of(rendered)
    assert {problem: set(names) for problem, names in problems.items()} == TWINS
    for problem, names in problems.items():
        assert sorted(names.values()) == ["critical", "warning"], f"{problem}: {names}"


def test_a_promtool_case_shows_both_twins_of_each_pair_firing_together_with_the_same_labels(rendered):
    """The inhibition premise: at some moment both twins fire for one instance with the same labels but
    alertname and severity, so the critical's labels select the warning."""
    shown = set()
    for content in rule_tests().values():
        for case in content["tests"]:
            by_time: dict[str, dict[str, list[dict]]] = {}
            for check in case.get("alert_rule_test", []):
                by_time.setdefault(check["eval_time"], {})[check["alertname"]] = check.get("exp_alerts", [])
            for alerts in by_time.values():
                for problem, names in TWINS.items():
                    firing = [{frozenset((key, value) for key, value in alert["exp_labels"].items()
                                         if key != "severity") for alert in alerts.get(name, [])}
                              for name in names]
                    together = set.intersection(*firing)
                    if any(dict(labels).get("problem") == problem for labels in together):
                        shown.add(problem)
    assert shown == set(TWINS), f"no promtool case fires both twins together for: {sorted(set(TWINS) - shown)}"
