"""Prometheus's targets, derived from the inventory: scrape jobs, Alertmanagers, remote_write,
blackbox probes and VictoriaMetrics's deduplication interval.

A host's groups say which exporters it runs.

`prometheus_scrape_jobs` turns a table of exporter kinds (group, role) into one Prometheus scrape
job per kind. Each target's port, scheme and credentials come from the host's variables of that role
(`node_exporter_port` from group_vars/all/ports.yml, `node_exporter_web_config` from
group_vars/all/stack.yml, or the inventory's own), which every host's hostvars carry, so a port is
written in exactly one place and an override in the inventory is seen by both the exporter and
Prometheus. How hosts are found and reached is shared with the other
filters: plugins/plugin_utils/monstack/inventory.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.durations import prometheus_duration_seconds  # noqa: E402
from monstack.inventory import (host_value, port_number, scrape_address,  # noqa: E402
                                web_config_requires_client_cert)


def prometheus_scrape_jobs(kinds: dict, groups: dict, hostvars, scrape_user: str,
                           disabled: list | None = None) -> list:
    """One job per exporter kind that has hosts, sorted by kind.

    kinds: {kind: {"group": inventory group, "role": role name, "metrics_path": optional,
                   "scrape_timeout": optional}}.
    Returns [{"job_name", "scheme", "metrics_path", "targets": [{"address", "instance"}],
              "username", "password_from", "scrape_timeout", "client_cert"}], username "" when the
    exporters need no password, scrape_timeout "" for the global one, and client_cert true when their
    web configuration requires a client certificate (client_auth_type). The password itself stays out of the jobs
    (which the play keeps as facts, printed at -v): password_from says where scrape_job_password
    reads it, {"host", "variable", "user", "role"}.
    """
    jobs = []
    for kind in sorted(kinds):
        if kind in (disabled or []):
            continue
        spec = kinds[kind]
        hosts = list(groups.get(spec["group"], []))
        if not hosts:
            continue
        role = spec["role"]
        port_var, web_var = f"{role}_port", f"{role}_web_config"
        settings = {}
        targets = []
        for host in hosts:
            # Inventory data (group_vars/all/ports.yml, or the host's own): every host sees it in hostvars.
            port = host_value(hostvars, host, port_var, None)
            if port in (None, ""):
                raise AnsibleFilterError(f"{host}: {port_var} is not set, so Prometheus cannot scrape it: "
                                         f"group_vars/all/ports.yml defines it for the stack; set it there or "
                                         f"in the inventory")
            web = host_value(hostvars, host, web_var, {}) or {}
            users = web.get("basic_auth_users") or {}
            if users and scrape_user not in users:
                raise AnsibleFilterError(
                    f"{host}: {web_var}.basic_auth_users has no user '{scrape_user}' "
                    f"(prometheus_scrape_username), so Prometheus could not scrape it: add that user"
                )
            host_settings = {
                "scheme": "https" if web.get("tls_server_config") else "http",
                "password": str(users.get(scrape_user, "")) if users else "",
                "client_cert": web_config_requires_client_cert(web),
            }
            if settings and host_settings != settings:
                raise AnsibleFilterError(
                    f"{host}: {web_var} differs from the other hosts of group '{spec['group']}' in TLS, in "
                    f"the client certificates it requires or in the password of '{scrape_user}'; one job "
                    f"scrapes them all, so give them the same "
                    f"(set it in group_vars)"
                )
            settings = host_settings
            address = scrape_address(hostvars, host)
            if ":" in address and not address.startswith("["):
                address = f"[{address}]"
            targets.append({"address": f"{address}:{port_number(port, f'{host}: {port_var}')}", "instance": host})
        jobs.append({
            "job_name": kind,
            "scheme": settings["scheme"],
            "metrics_path": spec.get("metrics_path", "/metrics"),
            "scrape_timeout": spec.get("scrape_timeout", ""),
            "targets": targets,
            "username": scrape_user if settings["password"] else "",
            "password_from": {"host": hosts[0], "variable": web_var, "user": scrape_user, "role": role}
            if settings["password"] else {},
            "client_cert": settings["client_cert"],
        })
    return jobs


def scrape_job_password(job: dict, hostvars) -> str:
    """The password a job from prometheus_scrape_jobs scrapes with ("" for none), read where its
    password_from says: the same one for every host of the job, which prometheus_scrape_jobs checked."""
    source = job.get("password_from") or {}
    if not source:
        return ""
    web = host_value(hostvars, source["host"], source["variable"], {}) or {}
    return str((web.get("basic_auth_users") or {}).get(source["user"], ""))


def _client_settings(job: dict, ca_file: str, secrets_dir: str, client_cert_file: str = "",
                     client_key_file: str = "") -> dict:
    """scheme, basic_auth and tls_config of a job, in Prometheus's own form: the client certificate
    only for a job whose hosts require one (the others never ask for it)."""
    settings: dict = {"scheme": job["scheme"]}
    if job["username"]:
        settings["basic_auth"] = {"username": job["username"],
                                  "password_file": f"{secrets_dir}/{job['job_name']}.password"}
    tls: dict = {}
    if job["scheme"] == "https" and ca_file:
        tls["ca_file"] = ca_file
    if job.get("client_cert"):
        if not (client_cert_file and client_key_file):
            raise AnsibleFilterError(
                f"the hosts of job '{job['job_name']}' require a client certificate (client_auth_type of their web "
                f"configuration), so Prometheus must present one: set prometheus_scrape_client_cert_file and "
                f"prometheus_scrape_client_key_file")
        tls.update(cert_file=client_cert_file, key_file=client_key_file)
    if tls:
        settings["tls_config"] = tls
    return settings


def prometheus_scrape_configs(jobs: list, ca_file: str = "", secrets_dir: str = "/etc/prometheus/secrets",
                              client_cert_file: str = "", client_key_file: str = "") -> list:
    """scrape_configs entries for jobs from prometheus_scrape_jobs: one static target per host, each
    labelled instance=<inventory name> so dashboards and alerts name hosts, not host:port."""
    return [
        {"job_name": job["job_name"], "metrics_path": job["metrics_path"],
         **({"scrape_timeout": job["scrape_timeout"]} if job.get("scrape_timeout") else {}),
         **_client_settings(job, ca_file, secrets_dir, client_cert_file, client_key_file),
         "static_configs": [{"targets": [target["address"]], "labels": {"instance": target["instance"]}}
                            for target in job["targets"]]}
        for job in jobs
    ]


def prometheus_alertmanager_configs(jobs: list, ca_file: str = "", secrets_dir: str = "/etc/prometheus/secrets",
                                    client_cert_file: str = "", client_key_file: str = "") -> list:
    """alerting.alertmanagers entries: every Alertmanager target of the jobs, reached like a scrape."""
    return [
        {**_client_settings(job, ca_file, secrets_dir, client_cert_file, client_key_file),
         "static_configs": [{"targets": [target["address"] for target in job["targets"]]}]}
        for job in jobs
    ]


def prometheus_remote_write_configs(jobs: list, ca_file: str = "", secrets_dir: str = "/etc/prometheus/secrets",
                                    queue_config: dict | None = None, client_cert_file: str = "",
                                    client_key_file: str = "") -> list:
    """remote_write entries: every target of the jobs (VictoriaMetrics hosts, reached like a scrape),
    at /api/v1/write, with the job's password from its file. The `replica` label is dropped, so the
    two copies of a pair's sample are one series, which the server's deduplication then merges."""
    return [
        {"name": target["instance"], "url": f"{job['scheme']}://{target['address']}/api/v1/write",
         **{key: value for key, value in _client_settings(job, ca_file, secrets_dir, client_cert_file,
                                                          client_key_file).items() if key != "scheme"},
         "queue_config": dict(queue_config or {}),
         "write_relabel_configs": [{"action": "labeldrop", "regex": "replica"}]}
        for job in jobs for target in job["targets"]
    ]




def victoriametrics_dedup_interval(groups: dict, hostvars, default: str) -> str:
    """-dedup.minScrapeInterval for VictoriaMetrics: the longest prometheus_scrape_interval of the
    Prometheus hosts (each host's, from hostvars; `default`, the stack's value, when there is none), as a
    Go duration in seconds, so that the copies a Prometheus pair writes of one scrape fall into one
    interval."""
    longest = 0.0
    for host in groups.get("prometheus", []) or []:
        text = str(host_value(hostvars, host, "prometheus_scrape_interval", default))
        seconds = prometheus_duration_seconds(text)
        if seconds < 0:
            raise AnsibleFilterError(f"{host}: prometheus_scrape_interval '{text}' is not a Prometheus duration, so "
                                     f"the VictoriaMetrics deduplication interval cannot follow it")
        longest = max(longest, seconds)
    if not longest:
        longest = max(prometheus_duration_seconds(default), 0)
    return f"{int(longest * 1000)}ms" if longest != int(longest) else f"{int(longest)}s"


def prometheus_file_sd_configs(targets: dict, job_settings: dict | None = None,
                               file_sd_dir: str = "/etc/prometheus/file_sd") -> list:
    """scrape_configs entries for application jobs (prometheus_targets): each reads its targets from
    <file_sd_dir>/<job>.yml, which Prometheus re-reads by itself, plus the job's own settings."""
    return [
        {"job_name": name, **(job_settings or {}).get(name, {}),
         "file_sd_configs": [{"files": [f"{file_sd_dir}/{name}.yml"]}]}
        for name in sorted(targets)
    ]


_TARGET_SHAPES = {
    # prober -> (pattern, what a target must look like)
    "http": (re.compile(r"^https?://[^\s/]+(/\S*)?$"), "a URL such as https://shop.example.net/health"),
    "tcp": (re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):[0-9]{1,5}$"), "host:port such as db1:5432"),
    "icmp": (re.compile(r"^[^\s:/\[\]]+$|^[0-9A-Fa-f.]*(:[0-9A-Fa-f.]*){2,}$"), "a host name or address, without port"),
    "dns": (re.compile(r"^[^\s/]+$"), "a DNS server, host or host:port"),
    "grpc": (re.compile(r"^[^\s/]+:[0-9]{1,5}$"), "host:port"),
}


def prometheus_probe_configs(probes: list, inventory_probes: list, groups: dict, hostvars,
                             scrape_user: str, ca_file: str = "", secrets_dir: str = "/etc/prometheus/secrets",
                             client_cert_file: str = "", client_key_file: str = "") -> list:
    """scrape_configs that make the blackbox exporter probe targets, one job per module.

    probes: [{module, targets: [...]} or {module, group, target: "http://{address}/"}, labels: {...}].
    A group entry probes every host of that inventory group, `{address}` being how Prometheus reaches
    the host and `{host}` its inventory name. The exporter is the first host of group blackbox; its
    modules are its blackbox_exporter_modules (group_vars/all/probes.yml) and _extra. Unknown modules and
    targets of the wrong shape for their prober are refused with the fix. Without a host in group
    blackbox, inventory_probes are skipped (they are defaults), while explicit probes are refused.
    """
    exporters = prometheus_scrape_jobs({"blackbox": {"group": "blackbox", "role": "blackbox_exporter"}},
                                       groups, hostvars, scrape_user)
    if not exporters:
        if probes:
            raise AnsibleFilterError("prometheus_probes is set, but no host is in group blackbox to run the "
                                     "probes: add one")
        return []
    probes = list(inventory_probes or []) + list(probes or [])
    exporter = exporters[0]
    first = exporter["targets"][0]["instance"]
    modules = host_value(hostvars, first, "blackbox_exporter_modules", None)
    if not isinstance(modules, dict):
        raise AnsibleFilterError(f"{first}: blackbox_exporter_modules is not set, so no probe can name a module: "
                                 "group_vars/all/probes.yml defines it for the stack; set it there or in the inventory")
    modules = dict(modules) | dict(host_value(hostvars, first, "blackbox_exporter_modules_extra", None) or {})
    by_module: dict[str, list] = {}
    for probe in probes:
        module = probe.get("module", "")
        if module not in modules:
            raise AnsibleFilterError(
                f"probe module '{module}' is not a module of the blackbox exporter ({', '.join(sorted(modules))}): "
                "fix the name or add the module to blackbox_exporter_modules_extra")
        targets = [str(target) for target in probe.get("targets") or []]
        if probe.get("group"):
            pattern = str(probe.get("target", "{address}"))
            targets += [pattern.format(address=scrape_address(hostvars, host), host=host)
                        for host in groups.get(probe["group"], [])]
        prober = modules[module].get("prober", "")
        shape, wanted = _TARGET_SHAPES.get(prober, (re.compile(r"^\S+$"), "no spaces"))
        wrong = [target for target in targets if not shape.match(target)]
        if wrong:
            raise AnsibleFilterError(f"probe targets {wrong} of module '{module}' ({prober} prober) must be {wanted}")
        if targets:
            by_module.setdefault(module, []).append({"targets": targets, "labels": dict(probe.get("labels") or {})})
    configs = []
    for module in sorted(by_module):
        settings = _client_settings({**exporter, "job_name": "blackbox"}, ca_file, secrets_dir, client_cert_file,
                                    client_key_file)
        configs.append({
            "job_name": f"blackbox_{module}", "metrics_path": "/probe", "params": {"module": [module]},
            **settings,
            "static_configs": [{"targets": entry["targets"], **({"labels": entry["labels"]} if entry["labels"] else {})}
                               for entry in by_module[module]],
            # The target becomes the probe's parameter and the series' instance; the request goes to
            # the exporter.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": exporter["targets"][0]["address"]},
            ],
        })
    return configs


class FilterModule:
    def filters(self):
        return {
            "prometheus_scrape_jobs": prometheus_scrape_jobs,
            "scrape_job_password": scrape_job_password,
            "prometheus_scrape_configs": prometheus_scrape_configs,
            "prometheus_alertmanager_configs": prometheus_alertmanager_configs,
            "prometheus_file_sd_configs": prometheus_file_sd_configs,
            "prometheus_remote_write_configs": prometheus_remote_write_configs,
            "victoriametrics_dedup_interval": victoriametrics_dedup_interval,
            "prometheus_probe_configs": prometheus_probe_configs,
        }
