"""The rule library (roles/prometheus/templates/rules/): rendered by Ansible exactly as the role does,
accepted by promtool, and proven by promtool unit tests to fire when it should and stay silent when
it should not. Also: every alert is documented, tested, and reachable from its runbook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

BIN = Path(sys.executable).parent
PROMTOOL = BIN / "promtool"
RULE_TESTS = sorted((REPO_ROOT / "tests" / "rules").glob("*.test.yml"))
RUNBOOKS = REPO_ROOT / "docs" / "runbooks"

# The alerts DESIGN.md names from the seeds (where it gives alternatives, the one this project uses).
DESIGN_ALERTS = {
    "HighErrorRate", "CriticalErrorRate", "HighLatency", "HighResponseTime", "ServiceDown", "TargetDown",
    "PostgreSQLDown", "RedisDown", "MongoDBDown", "NginxDown", "HighCPUUsage", "CriticalCPUUsage",
    "HighMemoryUsage", "CriticalMemoryUsage", "DiskSpaceLow", "CriticalDiskSpace", "LowCacheHitRate",
    "DatabaseConnectionsNearMax", "SSLCertificateExpiringSoon", "SSLCertificateExpiryCritical",
    "BruteForceAttempt", "SuspiciousActivity", "RateLimitHits", "WebSocketDisconnectSpike",
    "HighMessageVolume", "Watchdog", "PrometheusConfigReloadFailed", "PrometheusRuleEvaluationFailures",
    "AlertmanagerNotificationsFailing", "BackupTooOld",
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run `make {PROMTOOL.relative_to(REPO_ROOT)}`"
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def render(out: Path, extra_vars: dict | None = None) -> Path:
    """Render the rule library into `out` with tests/rules/render.yml (Ansible, the role's own files)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "ansible-playbook"), str(REPO_ROOT / "tests" / "rules" / "render.yml"),
           "-e", json.dumps({"rules_out": str(out), **(extra_vars or {})})]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": f"{BIN}:/usr/bin:/bin"})
    assert done.returncode == 0, f"rendering the rules failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("rules"))


def alerts_of(directory: Path) -> dict[str, list[dict]]:
    """alert name -> its rules (one name may have several rules, such as LowCacheHitRate)."""
    alerts: dict[str, list[dict]] = {}
    for path in sorted(directory.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.setdefault(rule["alert"], []).append(rule)
    return alerts


def _tested_alerts() -> tuple[set[str], set[str]]:
    """Alert names with a case where they fire, and with a case where they stay silent."""
    firing, silent = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    return firing, silent


def test_promtool_accepts_every_rendered_rule_file(rendered):
    files = sorted(str(path) for path in rendered.glob("*.rules.yml"))
    assert len(files) >= 5, f"rendered only {files}"
    checked = promtool("check", "rules", *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(rendered, test_file):
    shutil.copy(test_file, rendered / test_file.name)
    result = promtool("test", "rules", test_file.name, cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_named_in_the_design_exists(rendered):
    missing = sorted(DESIGN_ALERTS - set(alerts_of(rendered)))
    assert not missing, f"alerts named in DESIGN.md but not in the rule library: {missing}"


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent(rendered):
    firing, silent = _tested_alerts()
    alerts = set(alerts_of(rendered))
    assert not alerts - firing, f"no promtool case shows these alerts firing: {sorted(alerts - firing)}"
    # The Watchdog is the exception: it must always fire.
    quiet_untested = sorted(alerts - silent - {"Watchdog"})
    assert not quiet_untested, f"no case shows these staying silent: {quiet_untested}"


def test_every_alert_carries_severity_summary_description_and_runbook(rendered):
    problems = []
    for name, rules in alerts_of(rendered).items():
        for rule in rules:
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info", "none"):
                problems.append(f"{name}: severity {rule.get('labels', {}).get('severity')!r}")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problems.append(f"{name}: no {key}")
            if annotations.get("runbook_url") != f"docs/runbooks/{name}.md":
                problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r}")
    assert not problems, problems


def test_every_alert_has_a_runbook_with_what_to_check_and_what_to_do(rendered):
    problems = []
    for name in alerts_of(rendered):
        page = RUNBOOKS / f"{name}.md"
        if not page.is_file():
            problems.append(f"{page.relative_to(REPO_ROOT)} is missing")
            continue
        text = page.read_text()
        for heading in ("## What it means", "## First checks", "## Fixes"):
            if heading not in text:
                problems.append(f"{page.name} has no '{heading}'")
    assert not problems, problems


def test_a_disabled_rule_file_is_not_rendered(tmp_path):
    out = render(tmp_path, {"prometheus_rule_files_disabled": ["application"]})
    names = sorted(path.name for path in out.glob("*.rules.yml"))
    assert "application.rules.yml" not in names and "node.rules.yml" in names, names


def test_a_threshold_override_changes_only_that_threshold(tmp_path):
    out = render(tmp_path, {"prometheus_rule_thresholds_override": {"cpu_warning_percent": 90}})
    alerts = alerts_of(out)
    assert alerts["HighCPUUsage"][0]["expr"].endswith("> 90"), alerts["HighCPUUsage"][0]["expr"]
    assert alerts["CriticalCPUUsage"][0]["expr"].endswith("> 95"), alerts["CriticalCPUUsage"][0]["expr"]
