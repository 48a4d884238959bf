"""plugins/filter/alert_routing.py: the seeds' routing by severity, whichever integrations a site has."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from conftest import load_module

routing = load_module("plugins/filter/alert_routing.py", "monstack_alert_routing")

SEVERITIES = ["critical", "warning", "info"]
INTEGRATIONS = {"critical": ["pagerduty", "slack", "email"], "warning": ["slack", "email"], "info": ["slack"]}
CHANNELS = {"critical": "#alerts-critical", "warning": "#alerts-warning", "info": "#alerts-info"}
EVERYTHING = {"pagerduty_routing_key_file": "/etc/alertmanager/pagerduty-routing-key",
              "slack_api_url_file": "/etc/alertmanager/slack-api-url",
              "slack_channels": CHANNELS, "email_to": "oncall@example.net", "webhooks": []}


def receivers(settings):
    return {r["name"]: r for r in routing.alertmanager_receivers(SEVERITIES, INTEGRATIONS, settings)}


def test_with_everything_configured_each_severity_gets_the_seeds_integrations():
    result = receivers(EVERYTHING)
    assert sorted(k for k in result["critical"] if k.endswith("_configs")) == [
        "email_configs", "pagerduty_configs", "slack_configs"]
    assert sorted(k for k in result["warning"] if k.endswith("_configs")) == ["email_configs", "slack_configs"]
    assert sorted(k for k in result["info"] if k.endswith("_configs")) == ["slack_configs"]
    assert [result[s]["slack_configs"][0]["channel"] for s in SEVERITIES] == list(CHANNELS.values())


def test_receivers_name_the_secret_files_and_hold_no_secret():
    result = receivers(EVERYTHING)
    pagerduty = result["critical"]["pagerduty_configs"][0]
    assert pagerduty["routing_key_file"] == EVERYTHING["pagerduty_routing_key_file"]
    assert all(result[s]["slack_configs"][0]["api_url_file"] == EVERYTHING["slack_api_url_file"] for s in SEVERITIES)
    flat = repr(result)
    assert "routing_key'" not in flat and "api_url'" not in flat, flat


def test_only_email_configured_still_gives_every_severity_a_receiver():
    result = receivers({"email_to": "oncall@example.net", "slack_channels": CHANNELS})
    assert list(result) == SEVERITIES
    assert "email_configs" in result["critical"] and "email_configs" in result["warning"]
    assert result["info"] == {"name": "info"}, "info goes to chat only; without Slack it is an empty receiver"


def test_webhooks_join_only_the_severities_they_list():
    hooks = [{"url": "http://hook.test/all", "severities": SEVERITIES},
             {"url": "http://hook.test/pager", "severities": ["critical"], "send_resolved": False}]
    result = receivers({"webhooks": hooks, "slack_channels": CHANNELS})
    assert [h["url"] for h in result["critical"]["webhook_configs"]] == ["http://hook.test/all", "http://hook.test/pager"]
    assert [h["url"] for h in result["info"]["webhook_configs"]] == ["http://hook.test/all"]
    assert result["critical"]["webhook_configs"][1]["send_resolved"] is False


def test_slack_without_a_channel_for_a_severity_is_refused():
    with pytest.raises(AnsibleFilterError, match="no channel for severity 'info'"):
        receivers({**EVERYTHING, "slack_channels": {"critical": "#c", "warning": "#w"}})


def test_routes_send_the_watchdog_first_then_each_severity_to_its_receiver():
    routes = routing.alertmanager_routes(SEVERITIES, "1m")
    assert routes[0]["receiver"] == "watchdog" and routes[0]["repeat_interval"] == "1m"
    assert [(r["receiver"], r["matchers"]) for r in routes[1:]] == [
        (s, [f'severity="{s}"']) for s in SEVERITIES]


@pytest.mark.parametrize(("hooks", "complaint"), [
    ([], ""),
    ([{"url": "https://hook.test/T0/secret-token", "severities": ["critical"], "send_resolved": False}], ""),
    ([{"url": "http://user:token@hook.test:8080/x?k=v"}], ""),
    ([{"url": "https://hook.test/x", "severities": []}], ""),
    ([{"name": "ops", "url": "https://hook.test/x"}], ""),
    ([{"url": "ftp://hook.test/secret-token"}], "[0].url is not an http(s) URL"),
    ([{"url": "https://hook.test/a b"}], "[0].url is not an http(s) URL"),
    ([{"severities": ["critical"]}], "[0].url is not an http(s) URL"),
    ([{"url": "https://hook.test/x", "severities": ["critical", "page"]}], "[0].severities: page not among"),
    ([{"url": "https://hook.test/x", "severities": "critical"}], "[0].severities must be a list"),
    ([{"url": "https://hook.test/x", "severity": ["critical"]}], "[0] has unknown keys severity"),
    ([{"url": "https://hook.test/x", "send_resolved": "no"}], "[0].send_resolved must be true or false"),
    (["https://hook.test/x"], "[0] must be a mapping"),
    ({"url": "https://hook.test/x"}, "must be a list"),
])
def test_webhook_problems_name_the_entry_and_never_the_url(hooks, complaint):
    problem = routing.alertmanager_webhook_problems(hooks, SEVERITIES)
    if not complaint:
        assert problem == ""
        return
    assert problem.startswith("alertmanager_webhook_receivers: ") and complaint in problem, problem
    assert "secret-token" not in problem and "hook.test" not in problem


@pytest.mark.parametrize(("url", "https_only", "fine"), [
    ("", True, True),
    ("https://hooks.slack.com/services/T0/B0/secret", True, True),
    ("http://hooks.slack.com/services/T0/B0/secret", True, False),
    ("http://dms.test/ping/secret", False, True),
    ("hooks.slack.com/services/secret", False, False),
    ("https://dms.test/ping/secret trailing", False, False),
])
def test_url_problem_never_repeats_the_url(url, https_only, fine):
    problem = routing.alertmanager_url_problem(url, "alertmanager_x_url", https_only)
    assert (problem == "") == fine, problem
    assert "secret" not in problem


def _matches(matcher: str, labels: dict) -> bool:
    """Alertmanager's matcher forms that alertmanager_inhibit_rules writes: name="v" and name=~"re"."""
    name, op, value = re.fullmatch(r'(\w+)(=~|=)"(.*)"', matcher).groups()
    got = labels.get(name, "")
    return re.fullmatch(value, got) is not None if op == "=~" else got == value


def inhibited(rules: list, source: dict, target: dict) -> bool:
    """Alertmanager's inhibition: a label missing on both sides counts as equal."""
    return any(all(_matches(m, source) for m in rule["source_matchers"])
               and all(_matches(m, target) for m in rule["target_matchers"])
               and all(source.get(label, "") == target.get(label, "") for label in rule["equal"])
               for rule in rules)


RULES = routing.alertmanager_inhibit_rules(["instance", "job", "mountpoint", "path", "backup"])
DISK = {"problem": "disk_space", "instance": "db1", "job": "node", "mountpoint": "/data"}


def test_a_critical_twin_silences_the_warning_of_its_problem_on_the_same_instance_and_filesystem():
    critical = {"alertname": "CriticalDiskSpace", "severity": "critical", **DISK}
    warning = {"alertname": "DiskSpaceLow", "severity": "warning", **DISK}
    assert inhibited(RULES, critical, warning)
    assert not inhibited(RULES, warning, critical)
    assert not inhibited(RULES, critical, {**warning, "mountpoint": "/"}), "another filesystem"
    assert not inhibited(RULES, critical, {**warning, "instance": "db2"}), "another host"
    assert not inhibited(RULES, critical, {**warning, "problem": "memory"}), "another problem"


def test_alerts_without_the_problem_label_are_paired_by_name_only():
    # Alertmanager takes a label missing on both as equal: without the problem=~".+" matcher any
    # critical of a host would silence all of its warnings.
    critical = {"alertname": "TargetDown", "severity": "critical", "instance": "db1", "job": "node"}
    assert not inhibited(RULES, critical, {"alertname": "LowCacheHitRate", "severity": "warning",
                                           "instance": "db1", "job": "node"})
    assert inhibited(RULES, {"alertname": "AppSlow", "severity": "critical", "instance": "db1"},
                     {"alertname": "AppSlow", "severity": "warning", "instance": "db1"})
    assert inhibited(RULES, {"alertname": "AppSlow", "severity": "warning", "instance": "db1"},
                     {"alertname": "AppSlow", "severity": "info", "instance": "db1"})
