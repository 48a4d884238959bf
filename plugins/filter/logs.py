"""Logs: what a host ships and where, derived from the inventory, rendered for Alloy or Promtail.

One description of log sources (`log_sources`) feeds both shippers, so switching
`log_shipper_kind` changes the program, not what is collected:

    {"name": "nginx_access", "type": "journal" | "file", "path": "<glob>" (file only),
     "format": "plain" | "json", "labels": {"service": ..., ...}}

`alloy_components` turns it into Alloy components (a list of plain dictionaries, checked by the unit
tests against upstream's component reference) and `alloy_syntax` writes them in Alloy's syntax;
`promtail_config` turns it into Promtail's YAML structure. `loki_push_urls` and
`loki_alertmanager_urls` find Loki and the Alertmanagers the way Prometheus finds its targets.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.inventory import host_url, host_value  # noqa: E402

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# What each service group writes, as Debian's packages lay it out (every file root- or service-owned,
# group adm, so the shipper reads them through membership of adm).
_SERVICE_LOGS = {
    "nginx": [
        {"name": "nginx_access", "path": "/var/log/nginx/access.log", "labels": {"service": "nginx", "log": "access"}},
        {"name": "nginx_error", "path": "/var/log/nginx/error.log", "labels": {"service": "nginx", "log": "error"}},
    ],
    "postgres": [
        {"name": "postgresql", "path": "/var/log/postgresql/postgresql-*.log", "labels": {"service": "postgresql"}},
    ],
    "redis": [
        {"name": "redis", "path": "/var/log/redis/redis-server*.log", "labels": {"service": "redis"}},
    ],
}


def log_sources(host: str, groups: dict, journal: bool = True, service_logs: bool = True,
                app_logs: list | None = None) -> list:
    """The log sources of `host`: the journal, its service groups' log files and the application logs.

    app_logs: [{"path": glob, "labels": {"service": ..., ...}, "format": "json" (default) | "plain",
                "name": optional}] (log_shipper_app_logs). Raises with the variable's name when an entry
    has no absolute path, no service label or a label name Loki would refuse.
    """
    sources: list = []
    if journal:
        sources.append({"name": "journal", "type": "journal", "format": "plain", "labels": {"job": "systemd-journal"}})
    if service_logs:
        for group in sorted(_SERVICE_LOGS):
            if host in groups.get(group, []):
                sources += [dict(entry, type="file", format="plain") for entry in _SERVICE_LOGS[group]]
    for index, entry in enumerate(app_logs or []):
        what = f"log_shipper_app_logs[{index}]"
        if not isinstance(entry, dict):
            raise AnsibleFilterError(f"{what} must be a dictionary with path and labels, got {entry!r}")
        path = str(entry.get("path") or "")
        if not path.startswith("/"):
            raise AnsibleFilterError(f"{what} has no path: give the absolute path (or glob) of the log file")
        labels = dict(entry.get("labels") or {})
        if not labels.get("service"):
            raise AnsibleFilterError(f"{what} ({path}) needs labels.service: the alerts and queries group by it")
        bad = [name for name in labels if not _LABEL.match(str(name)) or str(name).startswith("__")]
        if bad:
            raise AnsibleFilterError(f"{what} ({path}): label names {bad} are not valid Loki label names")
        fmt = entry.get("format", "json")
        if fmt not in ("json", "plain"):
            raise AnsibleFilterError(f"{what} ({path}): format must be json or plain, got {fmt!r}")
        name = str(entry.get("name") or f"app_{index}_{labels['service']}")
        sources.append({"name": re.sub(r"[^a-zA-Z0-9_]", "_", name), "type": "file", "path": path,
                        "format": fmt, "labels": {str(k): str(v) for k, v in labels.items()}})
    names = [source["name"] for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise AnsibleFilterError(f"log_shipper_app_logs: source names {duplicates} are used twice; give each a name")
    return sources


def _scheme(hostvars, host: str, web_var: str) -> str:
    web = host_value(hostvars, host, web_var, {}) or {}
    return "https" if web.get("tls_server_config") else "http"


def loki_push_urls(groups: dict, hostvars) -> list:
    """Push URL of every Loki host (group loki) on its loki_port, https when its loki_web_config has TLS."""
    return [host_url(hostvars, host, _scheme(hostvars, host, "loki_web_config"),
                 host_value(hostvars, host, "loki_port", None))
            + "/loki/api/v1/push" for host in groups.get("loki", [])]


def loki_alertmanager_urls(groups: dict, hostvars) -> list:
    """URL of every Alertmanager (group alertmanager), as Prometheus reaches them."""
    return [host_url(hostvars, host, _scheme(hostvars, host, "alertmanager_web_config"),
                 host_value(hostvars, host, "alertmanager_port", None))
            for host in groups.get("alertmanager", [])]


def _expr(text: str) -> dict:
    # A marker that survives Ansible's templating (a str subclass would not).
    return {"__alloy_expr__": text}


def _push_tls(url: str, ca_file: str, client_cert_file: str, client_key_file: str) -> dict:
    """tls_config of a push to `url` (the same keys in Alloy's loki.write and Promtail's clients): the CA
    Loki is verified with, and the certificate the shipper presents to a Loki that requires one."""
    if not url.startswith("https"):
        return {}
    tls = {"ca_file": ca_file} if ca_file else {}
    if client_cert_file and client_key_file:
        tls.update(cert_file=client_cert_file, key_file=client_key_file)
    return tls


def alloy_components(sources: list, push_urls: list, ca_file: str = "", external_labels: dict | None = None,
                     json_labels: list | None = None, client_cert_file: str = "", client_key_file: str = "") -> list:
    """Alloy components for `sources`, in order: the writer, the journal relabeling, then per source.

    Each component: {"component", "label", "arguments": {...}, "blocks": [{"name", "arguments", "blocks"}]}.
    """
    json_labels = list(json_labels if json_labels is not None else ["level"])
    tls = {url: _push_tls(url, ca_file, client_cert_file, client_key_file) for url in push_urls}
    write = {"component": "loki.write", "label": "default",
             "arguments": {"external_labels": dict(external_labels or {})},
             "blocks": [{"name": "endpoint", "arguments": {"url": url},
                         "blocks": [{"name": "tls_config", "arguments": tls[url], "blocks": []}] if tls[url] else []}
                        for url in push_urls]}
    receiver = _expr("loki.write.default.receiver")
    components = [write]
    for source in sources:
        forward = receiver
        if source["format"] == "json":
            components.append({
                "component": "loki.process", "label": source["name"],
                "arguments": {"forward_to": [receiver]},
                "blocks": [
                    {"name": "stage.json", "arguments": {"expressions": {name: name for name in json_labels}},
                     "blocks": []},
                    {"name": "stage.labels", "arguments": {"values": {name: name for name in json_labels}},
                     "blocks": []},
                ]})
            forward = _expr(f"loki.process.{source['name']}.receiver")
        if source["type"] == "journal":
            # The unit and the priority of each entry become labels (unit, level).
            components.append({
                "component": "loki.relabel", "label": source["name"], "arguments": {"forward_to": []},
                "blocks": [
                    {"name": "rule", "arguments": {"source_labels": ["__journal__systemd_unit"],
                                                   "target_label": "unit"}, "blocks": []},
                    {"name": "rule", "arguments": {"source_labels": ["__journal_priority_keyword"],
                                                   "target_label": "level"}, "blocks": []},
                ]})
            components.append({
                "component": "loki.source.journal", "label": source["name"],
                "arguments": {"forward_to": [forward], "labels": source["labels"],
                              "relabel_rules": _expr(f"loki.relabel.{source['name']}.rules")},
                "blocks": []})
        else:
            components.append({
                "component": "local.file_match", "label": source["name"],
                "arguments": {"path_targets": [dict(source["labels"], __path__=source["path"])]},
                "blocks": []})
            components.append({
                "component": "loki.source.file", "label": source["name"],
                "arguments": {"targets": _expr(f"local.file_match.{source['name']}.targets"),
                              "forward_to": [forward]},
                "blocks": []})
    return components


def _alloy_string(text) -> str:
    """A string literal of Alloy's syntax. JSON's escapes are Alloy's, but JSON writes a character
    beyond the Basic Multilingual Plane (an emoji) as a UTF-16 surrogate pair (\\ud83d\\ude00), which
    Alloy refuses: non-ASCII characters are written as they are (UTF-8), only quotes, backslashes and
    control characters escaped."""
    return json.dumps(str(text), ensure_ascii=False)


def _alloy_value(value, indent: str) -> str:
    if isinstance(value, dict) and set(value) == {"__alloy_expr__"}:
        return str(value["__alloy_expr__"])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return _alloy_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_alloy_value(item, indent) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        items = ",\n".join(f"{inner}{_alloy_string(k)} = {_alloy_value(v, inner)}" for k, v in value.items())
        return "{\n" + items + ",\n" + indent + "}"
    raise AnsibleFilterError(f"alloy_syntax: cannot write {value!r} in Alloy syntax")


def _alloy_block(name: str, label: str, arguments: dict, blocks: list, indent: str) -> list:
    head = f"{indent}{name}" + (f" {_alloy_string(label)}" if label else "") + " {"
    lines = [head]
    inner = indent + "  "
    for key, value in arguments.items():
        lines.append(f"{inner}{key} = {_alloy_value(value, inner)}")
    for block in blocks:
        lines += _alloy_block(block["name"], "", block.get("arguments", {}), block.get("blocks", []), inner)
    lines.append(indent + "}")
    return lines


def alloy_syntax(components: list) -> str:
    """The components in Alloy's configuration syntax."""
    out: list = []
    for component in components:
        out += _alloy_block(component["component"], component["label"], component.get("arguments", {}),
                            component.get("blocks", []), "")
        out.append("")
    return "\n".join(out)


def promtail_config(sources: list, push_urls: list, ca_file: str = "", external_labels: dict | None = None,
                    json_labels: list | None = None, http_address: str = "127.0.0.1", http_port: int = 9080,
                    positions_file: str = "/var/lib/promtail/positions.yaml", client_cert_file: str = "",
                    client_key_file: str = "") -> dict:
    """Promtail's configuration for `sources`, in Promtail's own YAML structure."""
    json_labels = list(json_labels if json_labels is not None else ["level"])
    clients = []
    for url in push_urls:
        client: dict = {"url": url, "external_labels": dict(external_labels or {})}
        tls = _push_tls(url, ca_file, client_cert_file, client_key_file)
        if tls:
            client["tls_config"] = tls
        clients.append(client)
    scrape_configs = []
    for source in sources:
        job: dict = {"job_name": source["name"]}
        if source["format"] == "json":
            job["pipeline_stages"] = [{"json": {"expressions": {name: name for name in json_labels}}},
                                      {"labels": {name: name for name in json_labels}}]
        if source["type"] == "journal":
            job["journal"] = {"labels": dict(source["labels"]), "max_age": "12h"}
            job["relabel_configs"] = [
                {"source_labels": ["__journal__systemd_unit"], "target_label": "unit"},
                {"source_labels": ["__journal_priority_keyword"], "target_label": "level"},
            ]
        else:
            job["static_configs"] = [{"targets": ["localhost"],
                                      "labels": dict(source["labels"], __path__=source["path"])}]
        scrape_configs.append(job)
    return {
        "server": {"http_listen_address": http_address, "http_listen_port": int(http_port),
                   "grpc_listen_address": "127.0.0.1", "grpc_listen_port": 0},
        "positions": {"filename": positions_file},
        "clients": clients,
        "scrape_configs": scrape_configs,
    }


class FilterModule:
    def filters(self):
        return {
            "log_sources": log_sources,
            "loki_push_urls": loki_push_urls,
            "loki_alertmanager_urls": loki_alertmanager_urls,
            "alloy_components": alloy_components,
            "alloy_syntax": alloy_syntax,
            "promtail_config": promtail_config,
        }
