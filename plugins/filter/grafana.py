"""Grafana's data sources, derived from the inventory (roles/grafana).

Every Prometheus, Alertmanager and VictoriaMetrics of the inventory becomes a data source, reached the way Prometheus
reaches them (plugins/plugin_utils/monstack/inventory.py: monitoring_address, ansible_host or the name; the
port and web config from each host's role variables, which every host's hostvars carry), so a port or a
TLS setting is written once. Loki hosts (group loki) become Loki data sources on loki_port. A data
source whose host requires client certificates (client_auth_type of its web config, as the stack's
Loki) gets the Grafana host's own certificate and key.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.inventory import host_url, host_value, web_config_requires_client_cert  # noqa: E402

# kind -> (inventory group, role, Grafana data source type, display name)
_KINDS = {
    "prometheus": ("prometheus", "prometheus", "prometheus", "Prometheus"),
    "alertmanager": ("alertmanager", "alertmanager", "alertmanager", "Alertmanager"),
    # Long-term storage: it answers Prometheus's query API, so the dashboards' Prometheus-type data
    # source variable lists it beside the Prometheus servers.
    "victoriametrics": ("victoriametrics", "victoriametrics", "prometheus", "VictoriaMetrics"),
}


def _client(entry: dict, scheme: str, ca_pem: str, users: dict, username: str, what: str,
            client_cert: dict | None = None) -> dict:
    """TLS trust, client certificate and basic auth of one data source; secrets go to secureJsonData
    (encrypted by Grafana). client_cert: {"cert", "key"} PEMs when the host requires a certificate."""
    json_data = dict(entry.pop("jsonData", {}))
    secure: dict = {}
    if scheme == "https" and ca_pem:
        json_data["tlsAuthWithCACert"] = True
        secure["tlsCACert"] = ca_pem
    if scheme == "https" and client_cert is not None:
        json_data["tlsAuth"] = True
        # Empty only before the play read them (the preflight) or in a dry run of a new host.
        if client_cert.get("cert") and client_cert.get("key"):
            secure["tlsClientCert"] = client_cert["cert"]
            secure["tlsClientKey"] = client_cert["key"]
    if users:
        if username not in users:
            raise AnsibleFilterError(
                f"{what}.basic_auth_users has no user '{username}' (grafana_datasource_username), so Grafana "
                f"could not query it: add that user there or set grafana_datasource_username")
        entry["basicAuth"] = True
        entry["basicAuthUser"] = username
        secure["basicAuthPassword"] = str(users[username])
    entry["jsonData"] = json_data
    if secure:
        entry["secureJsonData"] = secure
    return entry


def grafana_datasources(groups: dict, hostvars, username: str, ca_pem: str = "",
                        loki_scheme: str = "https", client_cert_file: str = "",
                        client_key_file: str = "", client_cert_pem: str = "", client_key_pem: str = "") -> list:
    """Provisioning entries (Grafana's datasources: list) for every Prometheus, Alertmanager,
    VictoriaMetrics and Loki host of the inventory. The first Prometheus is the default data source, uid `prometheus`; every
    other one is named after its host, uid `<kind>-<host>`. A host whose web config requires client
    certificates gets client_cert_pem and client_key_pem (the contents of client_cert_file and
    client_key_file on the Grafana host); without those files it is refused, naming the variables."""
    sources = []

    def client_cert(web: dict, what: str) -> dict | None:
        if not web_config_requires_client_cert(web):
            return None
        if not (client_cert_file and client_key_file):
            raise AnsibleFilterError(
                f"{what} requires a client certificate (client_auth_type), so Grafana must present one: set "
                f"grafana_datasource_client_cert_file and grafana_datasource_client_key_file")
        return {"cert": client_cert_pem, "key": client_key_pem}

    for kind, (group, role, ds_type, title) in _KINDS.items():
        for index, host in enumerate(groups.get(group, [])):
            port = host_value(hostvars, host, f"{role}_port", None)
            web = host_value(hostvars, host, f"{role}_web_config", {}) or {}
            scheme = "https" if web.get("tls_server_config") else "http"
            entry = {
                "name": title if index == 0 else f"{title} {host}",
                "uid": kind if index == 0 else f"{kind}-{host}",
                "type": ds_type,
                "access": "proxy",
                "orgId": 1,
                "url": host_url(hostvars, host, scheme, port),
                "isDefault": kind == "prometheus" and index == 0,
                "editable": False,
            }
            if ds_type == "prometheus":
                # VictoriaMetrics holds what the Prometheus hosts scraped, at their interval.
                interval = host_value(hostvars, host if kind == "prometheus" else
                                               (groups.get("prometheus") or [host])[0], "prometheus_scrape_interval",
                                               None)
                entry["jsonData"] = {"httpMethod": "POST", "timeInterval": str(interval)}
            else:
                # Alertmanager data source settings: see the note in tests/unit/test_grafana_config.py.
                entry["jsonData"] = {"implementation": "prometheus", "handleGrafanaManagedAlerts": False}
            what = f"{host}: {role}_web_config"
            sources.append(_client(entry, scheme, ca_pem, web.get("basic_auth_users") or {}, username, what,
                                   client_cert(web, what)))
    for index, host in enumerate(groups.get("loki", [])):
        port = host_value(hostvars, host, "loki_port", None)
        scheme = str(loki_scheme)
        if scheme not in ("http", "https"):
            raise AnsibleFilterError(f"grafana_loki_scheme '{scheme}' must be http or https")
        entry = {"name": "Loki" if index == 0 else f"Loki {host}", "uid": "loki" if index == 0 else f"loki-{host}",
                 "type": "loki", "access": "proxy", "orgId": 1, "url": host_url(hostvars, host, scheme, port),
                 "isDefault": False, "editable": False, "jsonData": {"maxLines": 1000}}
        web = host_value(hostvars, host, "loki_web_config", {}) or {}
        sources.append(_client(entry, scheme, ca_pem, {}, username, f"{host}: loki",
                               client_cert(web, f"{host}: loki_web_config")))
    return sources


def grafana_provisioning_literal(value):
    """`value` (provisioning entries) with every `$` of every string doubled, so that Grafana reads
    back exactly the text given.

    Grafana replaces $NAME, ${NAME} and $__env{...} with the environment in every value of its
    provisioning files, and reads $$ as one $ (docs: administration/provisioning, "Use of the special
    character $"): a password or a URL from the inventory that holds a $ would otherwise reach Grafana
    changed, or be read from the daemon's environment. Keys are left as they are (Grafana does not
    expand them); numbers and booleans have no $."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: grafana_provisioning_literal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [grafana_provisioning_literal(item) for item in value]
    return value


class FilterModule:
    def filters(self):
        return {"grafana_datasources": grafana_datasources,
                "grafana_provisioning_literal": grafana_provisioning_literal}
