"""Alertmanager's routing tree and receivers, built from the project's severity model.

The seeds route by severity: critical pages, chats and mails; warning chats and mails; info chats.
Each severity gets one receiver holding every integration configured for it, so the tree stays the
same whichever integrations a site has (an integration without settings is left out, and a receiver
with none is valid and simply notifies nobody).

The PagerDuty key and the Slack URL are not in the receivers: they name the files holding them
(routing_key_file, api_url_file, which Alertmanager reads at each notification, 0.25 and later), so
alertmanager.yml carries no such secret. Webhook URLs stay in it: url_file came only with 0.26.

Inhibition: a critical alert silences the warnings and infos of the same problem, and a warning the
infos. "The same problem" is either the same alert name (rules in the guides' style, one name per
severity level) or the same `problem` label: the rule library's twins have two names
(HighCPUUsage/CriticalCPUUsage) and share that label (problem="cpu"). The `problem` rules match only
alerts that carry the label, since Alertmanager takes a label missing on both sides as equal.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

SEVERITIES = ("critical", "warning", "info")
# The label the rule library's warning/critical twins share (roles/prometheus/templates/rules/).
PROBLEM_LABEL = "problem"
# Which severity silences which: the source, and the severities below it.
_INHIBITS = (("critical", "warning|info"), ("warning", "info"))


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
    settings: {pagerduty_routing_key_file, slack_api_url_file, slack_channels, email_to, webhooks}: the
    two files are paths on the host ('' when the integration is off).
    """
    receivers = []
    for severity in severities:
        receiver: dict = {"name": severity}
        wanted = integrations.get(severity, [])
        if "pagerduty" in wanted and settings.get("pagerduty_routing_key_file"):
            receiver["pagerduty_configs"] = [{
                "routing_key_file": settings["pagerduty_routing_key_file"],
                "severity": severity,
                "description": '{{ template "monstack.title" . }}',
                "send_resolved": True,
            }]
        if "slack" in wanted and settings.get("slack_api_url_file"):
            channel = (settings.get("slack_channels") or {}).get(severity)
            if not channel:
                raise AnsibleFilterError(f"alertmanager_slack_channels has no channel for severity '{severity}'")
            receiver["slack_configs"] = [{
                "api_url_file": settings["slack_api_url_file"],
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


# An http(s) URL as Alertmanager's webhook and Slack settings take it: a host, then anything but
# whitespace (a token in the path or the query is usual; user:password@ too).
_HTTP_URL = re.compile(r"https?://[^\s/?#]+([/?#]\S*)?")


def alertmanager_url_problem(url, name: str, https_only: bool = False) -> str:
    """"<name>: <problem>" when `url` is neither empty nor an http(s) URL ("" when it is fine). The
    value is not repeated: such URLs usually carry a token."""
    text = str(url or "")
    if not text or (_HTTP_URL.fullmatch(text) and (text.startswith("https://") or not https_only)):
        return ""
    wanted = "an https URL" if https_only else "an http(s) URL"
    return (f"{name}: is not {wanted} such as https://hooks.example.net/... (the value is not shown: it may "
            f"hold a token)")


def alertmanager_webhook_problems(webhooks, severities: list, name: str = "alertmanager_webhook_receivers") -> str:
    """What is wrong with the generic webhooks ({url, severities, send_resolved}), as one line
    "<name>: <problem>; <problem>" naming each entry by its index, "" when nothing. URLs are not
    repeated: they usually carry a token."""
    if not isinstance(webhooks, list):
        return f"{name}: must be a list of {{url, severities, send_resolved}}"
    problems = []
    for index, hook in enumerate(webhooks):
        if not isinstance(hook, dict):
            problems.append(f"[{index}] must be a mapping {{url, severities, send_resolved}}")
            continue
        # A misspelt key (severity) would silently send every severity; a name is the operator's label.
        unknown = sorted(str(key) for key in hook if key not in ("url", "severities", "send_resolved", "name"))
        if unknown:
            problems.append(f"[{index}] has unknown keys {', '.join(unknown)} (it takes url, severities, "
                            f"send_resolved and a name of your own)")
        if not _HTTP_URL.fullmatch(str(hook.get("url", ""))):
            problems.append(f"[{index}].url is not an http(s) URL (the value is not shown: it may hold a token)")
        wanted = hook.get("severities", list(severities))
        if not isinstance(wanted, list):
            problems.append(f"[{index}].severities must be a list of some of {', '.join(severities)}")
        elif sorted(set(map(str, wanted)) - set(severities)):
            problems.append(f"[{index}].severities: {', '.join(sorted(set(map(str, wanted)) - set(severities)))} "
                            f"not among {', '.join(severities)}")
        if not isinstance(hook.get("send_resolved", True), bool):
            problems.append(f"[{index}].send_resolved must be true or false")
    return f"{name}: {'; '.join(problems)}" if problems else ""


def alertmanager_inhibit_rules(equal: list) -> list:
    """Inhibition rules: per severity step, one for twins of one name and one for the `problem` label.

    equal: the further labels both alerts must share (the instance, the filesystem...), so a critical
    alert of one host or disk never silences the warning of another.
    """
    rules = []
    for source, targets in _INHIBITS:
        for key in ("alertname", PROBLEM_LABEL):
            source_matchers = [f'severity="{source}"']
            if key == PROBLEM_LABEL:
                source_matchers.append(f'{PROBLEM_LABEL}=~".+"')
            rules.append({"source_matchers": source_matchers, "target_matchers": [f'severity=~"{targets}"'],
                          "equal": [key] + [label for label in equal if label != key]})
    return rules


class FilterModule:
    def filters(self):
        return {
            "alertmanager_routes": alertmanager_routes,
            "alertmanager_receivers": alertmanager_receivers,
            "alertmanager_inhibit_rules": alertmanager_inhibit_rules,
            "alertmanager_url_problem": alertmanager_url_problem,
            "alertmanager_webhook_problems": alertmanager_webhook_problems,
        }
