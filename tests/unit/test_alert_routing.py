"""plugins/filter/alert_routing.py: the seeds' routing by severity, whichever integrations a site has."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from conftest import load_module

routing = load_module("plugins/filter/alert_routing.py", "monstack_alert_routing")

SEVERITIES = ["critical", "warning", "info"]
INTEGRATIONS = {"critical": ["pagerduty", "slack", "email"], "warning": ["slack", "email"], "info": ["slack"]}
CHANNELS = {"critical": "#alerts-critical", "warning": "#alerts-warning", "info": "#alerts-info"}
EVERYTHING = {"pagerduty_routing_key": "pd-key", "slack_api_url": "https://hooks.slack.test/x",
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
