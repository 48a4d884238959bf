"""Alertmanager's routing tree and receivers, built from the project's severity model.

The seeds route by severity: critical pages, chats and mails; warning chats and mails; info chats.
Each severity gets one receiver holding every integration configured for it, so the tree stays the
same whichever integrations a site has (an integration without settings is left out, and a receiver
with none is valid and simply notifies nobody).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

SEVERITIES = ("critical", "warning", "info")


def alertmanager_routes(severities: list, watchdog_interval: str) -> list:
    """Child routes: the Watchdog to its dead man's switch, then one route per severity."""
    routes = [{
        "receiver": "watchdog",
        "matchers": ['alertname="Watchdog"'],
        "group_wait": "0s",
        "group_interval": watchdog_interval,
        "repeat_interval": watchdog_interval,
    }]
    routes += [{"receiver": severity, "matchers": [f'severity="{severity}"']} for severity in severities]
    return routes


def alertmanager_receivers(severities: list, integrations: dict, settings: dict) -> list:
    """One receiver per severity with its configured integrations, plus generic webhooks.

    integrations: {severity: [pagerduty|slack|email, ...]} - which integrations a severity uses.
    settings: {pagerduty_routing_key, slack_api_url, slack_channels, email_to, webhooks}.
    """
    receivers = []
    for severity in severities:
        receiver: dict = {"name": severity}
        wanted = integrations.get(severity, [])
        if "pagerduty" in wanted and settings.get("pagerduty_routing_key"):
            receiver["pagerduty_configs"] = [{
                "routing_key": settings["pagerduty_routing_key"],
                "severity": severity,
                "description": '{{ template "monstack.title" . }}',
                "send_resolved": True,
            }]
        if "slack" in wanted and settings.get("slack_api_url"):
            channel = (settings.get("slack_channels") or {}).get(severity)
            if not channel:
                raise AnsibleFilterError(f"alertmanager_slack_channels has no channel for severity '{severity}'")
            receiver["slack_configs"] = [{
                "channel": channel,
                "send_resolved": True,
                "title": '{{ template "monstack.title" . }}',
                "text": '{{ template "monstack.text" . }}',
            }]
        if "email" in wanted and settings.get("email_to"):
            receiver["email_configs"] = [{
                "to": settings["email_to"],
                "send_resolved": True,
                "headers": {"Subject": '{{ template "monstack.title" . }}'},
                "text": '{{ template "monstack.text" . }}',
            }]
        hooks = [{"url": hook["url"], "send_resolved": bool(hook.get("send_resolved", True))}
                 for hook in settings.get("webhooks") or [] if severity in hook.get("severities", SEVERITIES)]
        if hooks:
            receiver["webhook_configs"] = hooks
        receivers.append(receiver)
    return receivers


class FilterModule:
    def filters(self):
        return {
            "alertmanager_routes": alertmanager_routes,
            "alertmanager_receivers": alertmanager_receivers,
        }
