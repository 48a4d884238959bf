"""How hosts find each other, derived from the inventory: scrape jobs, cluster peers, firewall openings,
and what each host backs up.

A host's groups say which exporters it runs.

`prometheus_scrape_jobs` turns a table of exporter kinds (group, role) into one Prometheus scrape
job per kind. Each target's port, scheme and credentials come from the host's own variables of that
role (for example `node_exporter_port`, `node_exporter_web_config`), falling back to the role's
defaults/main.yml, so a port is written in exactly one place and an override in the inventory is
seen by both the exporter and Prometheus.
"""

from __future__ import annotations

import re
import ipaddress
from pathlib import Path

import yaml
from ansible.errors import AnsibleFilterError


def _role_defaults(roles_dir: str, role: str) -> dict | None:
    """A role's defaults: defaults/main.yml, or the files of defaults/main/ merged in name order."""
    defaults = Path(roles_dir) / role / "defaults"
    files = [defaults / "main.yml"] if (defaults / "main.yml").is_file() else sorted((defaults / "main").glob("*.yml"))
    if not files:
        return None
    merged: dict = {}
    for path in files:
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


# Each hostvars[host] gathers all of that host's variables anew; the filters ask for several of
# them per host, so a host's are looked up once per hostvars object (one task's) and kept.
_HOST_VARIABLES: dict = {"hostvars": None, "hosts": {}}


def _host_variables(hostvars, host: str):
    """hostvars[host], looked up once for the hostvars given last."""
    if _HOST_VARIABLES["hostvars"] is not hostvars:
        _HOST_VARIABLES.update(hostvars=hostvars, hosts={})
    hosts = _HOST_VARIABLES["hosts"]
    if host not in hosts:
        hosts[host] = hostvars[host]
    return hosts[host]


def _host_value(hostvars, host: str, name: str, default):
    """hostvars[host][name], templated by Ansible, or `default` when the host does not set it."""
    host_vars = _host_variables(hostvars, host)
    if name in host_vars:
        value = host_vars[name]
        return default if value is None else value
    return default


def scrape_address(hostvars, host: str) -> str:
    """Address Prometheus connects to for `host`: monitoring_address, else ansible_host, else the name."""
    return str(_host_value(hostvars, host, "monitoring_address", "")
               or _host_value(hostvars, host, "ansible_host", "") or host)


# client_auth_type values of an exporter-toolkit tls_server_config (Loki's http_tls_config takes the
# same) under which the server refuses a client that presents no certificate.
CLIENT_CERT_REQUIRED = ("RequireAndVerifyClientCert", "RequireAnyClientCert")


def web_config_requires_client_cert(web) -> bool:
    """Whether a web configuration's server refuses clients without a certificate."""
    tls = (web or {}).get("tls_server_config") if isinstance(web, dict) else None
    return isinstance(tls, dict) and tls.get("client_auth_type") in CLIENT_CERT_REQUIRED


def prometheus_scrape_jobs(kinds: dict, groups: dict, hostvars, roles_dir: str, scrape_user: str,
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
        defaults = _role_defaults(roles_dir, role)
        if defaults is None:
            raise AnsibleFilterError(
                f"hosts {', '.join(hosts)} are in group '{spec['group']}', which runs role '{role}', "
                f"but {roles_dir}/{role} does not exist: remove them from the group or add "
                f"'{kind}' to prometheus_scrape_kinds_disabled"
            )
        port_var, web_var = f"{role}_port", f"{role}_web_config"
        settings = {}
        targets = []
        for host in hosts:
            port = _host_value(hostvars, host, port_var, defaults.get(port_var))
            if port in (None, ""):
                raise AnsibleFilterError(f"{role} has no {port_var}: cannot scrape {host}")
            web = _host_value(hostvars, host, web_var, defaults.get(web_var) or {}) or {}
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
            targets.append({"address": f"{address}:{int(port)}", "instance": host})
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


def scrape_job_password(job: dict, hostvars, roles_dir: str) -> str:
    """The password a job from prometheus_scrape_jobs scrapes with ("" for none), read where its
    password_from says: the same one for every host of the job, which prometheus_scrape_jobs checked."""
    source = job.get("password_from") or {}
    if not source:
        return ""
    defaults = _role_defaults(roles_dir, source["role"]) or {}
    web = _host_value(hostvars, source["host"], source["variable"], defaults.get(source["variable"]) or {}) or {}
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


_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def victoriametrics_dedup_interval(groups: dict, hostvars, roles_dir: str) -> str:
    """-dedup.minScrapeInterval for VictoriaMetrics: the longest prometheus_scrape_interval of the
    Prometheus hosts (each host's, else the role's default), as a Go duration in seconds, so that the
    copies a Prometheus pair writes of one scrape fall into one interval."""
    default = (_role_defaults(roles_dir, "prometheus") or {}).get("prometheus_scrape_interval", "15s")
    longest = 0.0
    for host in groups.get("prometheus", []) or []:
        text = str(_host_value(hostvars, host, "prometheus_scrape_interval", default))
        match = _DURATION.match(text)
        if not text or not match:
            raise AnsibleFilterError(f"{host}: prometheus_scrape_interval '{text}' is not a Prometheus duration, so "
                                     f"the VictoriaMetrics deduplication interval cannot follow it")
        longest = max(longest, sum(int(n or 0) * unit for n, unit in zip(match.groups(), _DURATION_UNITS)))
    if not longest:
        longest = sum(int(n or 0) * unit for n, unit in zip(_DURATION.match(str(default)).groups(), _DURATION_UNITS))
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


def prometheus_probe_configs(probes: list, inventory_probes: list, groups: dict, hostvars, roles_dir: str,
                             scrape_user: str, ca_file: str = "", secrets_dir: str = "/etc/prometheus/secrets",
                             client_cert_file: str = "", client_key_file: str = "") -> list:
    """scrape_configs that make the blackbox exporter probe targets, one job per module.

    probes: [{module, targets: [...]} or {module, group, target: "http://{address}/"}, labels: {...}].
    A group entry probes every host of that inventory group, `{address}` being how Prometheus reaches
    the host and `{host}` its inventory name. The exporter is the first host of group blackbox; its
    modules are its own blackbox_exporter_modules(+_extra), or the role's defaults. Unknown modules and
    targets of the wrong shape for their prober are refused with the fix. Without a host in group
    blackbox, inventory_probes are skipped (they are defaults), while explicit probes are refused.
    """
    exporters = prometheus_scrape_jobs({"blackbox": {"group": "blackbox", "role": "blackbox_exporter"}},
                                       groups, hostvars, roles_dir, scrape_user)
    if not exporters:
        if probes:
            raise AnsibleFilterError("prometheus_probes is set, but no host is in group blackbox to run the "
                                     "probes: add one")
        return []
    probes = list(inventory_probes or []) + list(probes or [])
    exporter = exporters[0]
    first = exporter["targets"][0]["instance"]
    defaults = _role_defaults(roles_dir, "blackbox_exporter") or {}
    modules = dict(_host_value(hostvars, first, "blackbox_exporter_modules", defaults.get("blackbox_exporter_modules")))
    modules.update(_host_value(hostvars, first, "blackbox_exporter_modules_extra",
                               defaults.get("blackbox_exporter_modules_extra")) or {})
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


def _ip_address(text: str):
    """The IP address `text` is, or None; a zone index (fe80::1%eth0) is refused, as it may hold
    anything, a newline or a space included, that would reach flags and rulesets."""
    if "%" in str(text):
        return None
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        return None


def _is_ip(text: str) -> bool:
    return _ip_address(text) is not None


def _join_host_port(host: str, port) -> str:
    return f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"


def cluster_flags(hostvars, members: list, me: str, port, advertise_ip: str = "") -> list:
    """Alertmanager's --cluster.* flags for `me` in a cluster of `members` (inventory names).

    A single member gets clustering switched off (empty listen address): there is no one to gossip
    with, and an open gossip port would be one more thing to firewall. Peers are reached like scrape
    targets (monitoring_address, ansible_host, name). Alertmanager accepts only an IP address to
    advertise; without one it picks the first private address of the host's interfaces.
    """
    if len(members) < 2:
        return ["--cluster.listen-address="]
    flags = [f"--cluster.listen-address=0.0.0.0:{int(port)}"]
    if not advertise_ip:
        candidate = scrape_address(hostvars, me)
        advertise_ip = candidate if _is_ip(candidate) else ""
    if advertise_ip:
        if not _is_ip(advertise_ip):
            raise AnsibleFilterError(f"{me}: the cluster advertise address '{advertise_ip}' is not an IP address")
        flags.append(f"--cluster.advertise-address={_join_host_port(advertise_ip, port)}")
    flags += [f"--cluster.peer={_join_host_port(scrape_address(hostvars, peer), port)}"
              for peer in members if peer != me]
    return flags


# Firewall openings (roles/firewall): who may reach which port of a host. A source host's address is
# its monitoring_address or ansible_host when those are IP addresses, else what its facts show.

def _network(text: str, what: str) -> ipaddress._BaseNetwork:
    try:
        if "%" in str(text):
            raise ValueError("a zone index")
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise AnsibleFilterError(f"{what}: '{text}' is not an IP address or network (for example 10.0.0.0/8)") from None


def host_addresses(hostvars, host: str) -> list[str]:
    """IP addresses other hosts see `host` connect from."""
    for name in ("monitoring_address", "ansible_host"):
        address = _ip_address(str(_host_value(hostvars, host, name, "") or ""))
        if address is not None:
            return [str(address)]
    facts = _host_value(hostvars, host, "ansible_facts", {}) or {}
    found = [facts.get(key, {}).get("address") for key in ("default_ipv4", "default_ipv6")]
    found = [address for address in found if address]
    if not found:
        raise AnsibleFilterError(
            f"no IP address is known for {host}, which the firewall must let in: set its monitoring_address "
            f"(or ansible_host) to an IP address, or include it in the run so its facts are gathered")
    return found


def _port(value, what: str) -> int:
    if not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise AnsibleFilterError(f"{what}: port '{value}' is not a number from 1 to 65535")
    return int(value)


def firewall_openings(host: str, services: dict, groups: dict, hostvars, roles_dir: str,
                      admin_sources: list, extra: list, known: dict | None = None,
                      known_sources: list | None = None) -> list:
    """The openings of `host`: every service of `services` whose group holds the host, then `extra`,
    then the known services of the host's groups (`known`: {group: [{port, proto}]}) to known_sources.

    services: {name: {"group", "role", "port_var", "proto" (default tcp), "from": [group names, or
               "admin" for admin_sources]}}.
    extra: [{"port", "proto", "sources": [address, network or group name], "comment", "what": the
            variable to name in errors, default firewall_rules_extra[<index>]}].
    """
    extra = list(extra or []) + [
        {"port": service.get("port"), "proto": service.get("proto", "tcp"), "sources": known_sources,
         "comment": f"{group} (firewall_known_services)", "what": f"firewall_known_services.{group}"}
        for group, group_services in sorted((known or {}).items()) if host in groups.get(group, [])
        for service in group_services or []]
    admin = [str(_network(source, "firewall_admin_sources")) for source in admin_sources or []]

    def sources_of(names: list, what: str, groups_only: bool = False) -> list[str]:
        """Addresses of `names`: "admin", inventory groups (an absent one has no hosts) and, unless
        groups_only, addresses and networks."""
        found: list[str] = []
        for name in names:
            if name == "admin":
                found += admin
            elif name in groups:
                for member in groups[name]:
                    found += host_addresses(hostvars, member)
            elif not groups_only:
                found.append(str(_network(name, what)))
        return sorted(set(found), key=lambda text: (":" in text, text))

    openings = []
    for name in sorted(services):
        spec = services[name]
        if host not in groups.get(spec["group"], []):
            continue
        defaults = _role_defaults(roles_dir, spec["role"]) or {}
        port = _port(_host_value(hostvars, host, spec["port_var"], defaults.get(spec["port_var"])), spec["port_var"])
        sources = sources_of(spec["from"], name, groups_only=True)
        for proto in spec.get("protos", ["tcp"]):
            openings.append({"comment": name, "proto": proto, "port": port, "sources": sources})
    for index, rule in enumerate(extra or []):
        what = str(rule.get("what", f"firewall_rules_extra[{index}]"))
        proto = str(rule.get("proto", "tcp"))
        if proto not in ("tcp", "udp"):
            raise AnsibleFilterError(f"{what}: proto '{proto}' must be tcp or udp")
        if not rule.get("sources"):
            raise AnsibleFilterError(f"{what}: give sources (addresses, networks or inventory groups)")
        openings.append({"comment": str(rule.get("comment", f"extra {index}")), "proto": proto,
                         "port": _port(rule.get("port"), what), "sources": sources_of(rule["sources"], what)})
    for opening in openings:
        opening["ipv4"] = [s for s in opening["sources"] if ":" not in s]
        opening["ipv6"] = [s for s in opening["sources"] if ":" in s]
    return openings


_OPENING_KEYS = ("port", "proto", "sources", "comment")


def firewall_rules_problems(rules, groups: dict, what: str = "firewall_rules_extra") -> list:
    """One line per wrong entry of firewall_rules_extra, "<what>[<n>]: <problems>", for the preflight:
    every entry checked with the helpers firewall_openings uses, where that stops at the first."""
    if not isinstance(rules, list):
        return [f"{what}: must be a list of openings {{port, proto, sources, comment}}"]
    lines = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            lines.append(f"{what}[{index}]: must be a dictionary {{port, proto, sources, comment}}")
            continue
        wrong = []
        try:
            _port(rule.get("port"), "")
        except AnsibleFilterError:
            wrong.append(f"port '{rule.get('port')}' is not a number from 1 to 65535")
        if str(rule.get("proto", "tcp")) not in ("tcp", "udp"):
            wrong.append(f"proto '{rule.get('proto')}' must be tcp or udp")
        sources = rule.get("sources")
        if not isinstance(sources, list) or not sources:
            wrong.append("give sources: a list of addresses, networks or inventory groups")
        else:
            unknown = []
            for source in sources:
                try:
                    if str(source) not in groups and source != "admin":
                        _network(source, "")
                except AnsibleFilterError:
                    unknown.append(str(source))
            if unknown:
                wrong.append(f"'{', '.join(unknown)}' are not IP addresses, networks or inventory groups")
        extra = sorted(str(key) for key in rule if key not in _OPENING_KEYS)
        if extra:
            wrong.append(f"'{', '.join(extra)}' are not settings of an opening ({', '.join(_OPENING_KEYS)})")
        if wrong:
            lines.append(f"{what}[{index}]: {'; '.join(wrong)}")
    return lines


def firewall_cut_advice(cut: list) -> str:
    """For each listener a ruleset would cut off (monstack_state's cut_listeners), the line that names
    it and the firewall_rules_extra entry that keeps it reachable as it is now, or how to close it."""
    everywhere = ["0.0.0.0/0", "::/0"]
    return "\n".join(
        f"firewall_rules_extra: {item['port']}/{item['proto']} is listened on by {item['process']} (pid "
        f"{item['pid']}) on {item['address']}, and no opening keeps it reachable, so the ruleset would cut it "
        f"off. To keep it open as it is now, add to firewall_rules_extra: {{port: {item['port']}, proto: "
        f"{item['proto']}, sources: {everywhere}, comment: {item['process']}}} (or narrower sources); to close "
        f"it on purpose, add '{item['port']}/{item['proto']}' to firewall_ports_closed. Nothing was loaded."
        for item in cut)


def backup_components(catalogue: dict, host: str, groups: dict, hostvars, roles_dir: str,
                      disabled: list | None = None) -> list:
    """The stateful components `host` runs, each with its data directory resolved.

    catalogue: {name: {"group", "role", "data_var", "data_default", "only_when": optional {"var",
    "equals"}, ...}}; a component is on the host when its group holds it, it is not in `disabled`, and
    the host's value of only_when.var (else the role's default) equals only_when.equals. Its data
    directory is the host's value of data_var, else the role's default, else data_default. Returns the entries, with "name" and
    "data_dir", sorted by name.
    """
    unknown = sorted(set(disabled or []) - set(catalogue))
    if unknown:
        raise AnsibleFilterError(f"backup_components_disabled: unknown component(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(catalogue))}")
    found = []
    for name in sorted(catalogue):
        spec = catalogue[name]
        if host not in groups.get(spec["group"], []) or name in (disabled or []):
            continue
        role_defaults = _role_defaults(roles_dir, spec["role"]) or {}
        condition = spec.get("only_when")
        if condition and str(_host_value(hostvars, host, condition["var"], role_defaults.get(condition["var"]))) \
                != str(condition["equals"]):
            continue
        default = role_defaults.get(spec["data_var"], spec["data_default"])
        data_dir = str(_host_value(hostvars, host, spec["data_var"], default))
        if not data_dir.startswith("/") or data_dir.rstrip("/") in ("", "/var", "/var/lib", "/etc", "/usr"):
            raise AnsibleFilterError(f"{spec['data_var']}: '{data_dir}' is not a data directory to back up "
                                     f"and restore (an absolute path of its own, such as {spec['data_default']})")
        entry = {key: value for key, value in spec.items() if key not in ("group", "role", "data_default", "only_when")}
        if "settings" in spec:  # {key: variable}: more of the role's variables, resolved as data_var is
            entry["settings"] = {key: _host_value(hostvars, host, var, None if "{{" in str(role_defaults.get(var))
                                                  else role_defaults.get(var))  # a template: none
                                 for key, var in spec["settings"].items()}
        found.append(entry | {"name": name, "data_dir": data_dir.rstrip("/")})
    return found


class FilterModule:
    def filters(self):
        return {
            "prometheus_scrape_jobs": prometheus_scrape_jobs,
            "scrape_job_password": scrape_job_password,
            "scrape_address": scrape_address,
            "cluster_flags": cluster_flags,
            "prometheus_scrape_configs": prometheus_scrape_configs,
            "prometheus_alertmanager_configs": prometheus_alertmanager_configs,
            "prometheus_file_sd_configs": prometheus_file_sd_configs,
            "prometheus_remote_write_configs": prometheus_remote_write_configs,
            "victoriametrics_dedup_interval": victoriametrics_dedup_interval,
            "prometheus_probe_configs": prometheus_probe_configs,
            "web_config_requires_client_cert": web_config_requires_client_cert,
            "firewall_openings": firewall_openings,
            "firewall_cut_advice": firewall_cut_advice,
            "firewall_rules_problems": firewall_rules_problems,
            "backup_components": backup_components,
            "host_addresses": host_addresses,
        }
