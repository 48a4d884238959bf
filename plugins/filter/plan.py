"""The plan (playbooks/plan.yml): what site.yml would run where, read from the inventory alone.

The playbook runs each role's own checks on the controller and notes, per host, what the role runs
there (`__plan_steps`: the role, its units, and for some roles the firewall's openings, the backups,
the certificate or where logs go, all as the roles themselves compute them) and what it would refuse
(`__plan_problems`). These filters turn those notes into the plan's records (`plan_hosts`), the text
an operator reads (`plan_report`) and the refusals, one line per setting (`plan_problems`).

What the report shows is what the roles compute: the openings are the firewall role's own
(firewall_openings, which its ruleset is rendered from), the components and backup host the backup
role's (backup_components), the certificate's names pki's, the push URLs the log shipper's. Here, hosts'
names are put back where the firewall has their addresses, and two names are spelled as roles/backup
spells them: a component's timer, monstack-backup@<component>.timer, and the host's repository,
<backup_dir>/repository.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import yaml
from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

# One definition of how the firewall finds a host's addresses.
from monstack.inventory import host_addresses  # noqa: E402

# What the plan puts in a host's facts for the address the run reads there (default_ipv4): a marker,
# never an address, so that it cannot be taken for one; the report names the host instead.
FACT_ADDRESS = "(address of {host} from its facts)"


def plan_fact_address(host: str) -> str:
    """The stand-in for `host`'s address in its facts, which the plan does not gather."""
    return FACT_ADDRESS.format(host=host)


def plan_argument_spec(role: str, roles_dir: str) -> dict:
    """The options of a role's argument_specs (entry point main), which the plan checks as the run does
    before the role's tasks, without the specs' copies of the defaults: the plan imports the role into its
    play, so its defaults/main.yml gives every variable already, rendered (a default such as
    firewall_ssh_port's is a template, which the validation itself would not render)."""
    specs = yaml.safe_load((Path(roles_dir) / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"].get("options") or {}
    return {name: {key: value for key, value in spec.items() if key != "default"} for name, spec in options.items()}


def _value(host_vars, name: str, default):
    return host_vars[name] if name in host_vars else default


def _address_names(hostvars, hosts: list) -> dict:
    """Address -> the inventory names of the hosts the firewall knows by it."""
    names: dict = {}
    for host in hosts:
        try:
            addresses = host_addresses(hostvars, host)
        except AnsibleFilterError:
            # No address known (no stand-in for it either): no source is this host.
            continue
        for address in addresses:
            names.setdefault(str(address), []).append(host)
    return names


def _sources(sources: list, names: dict) -> list:
    """The firewall's sources with each host's address put back as the host's name, in order, once."""
    shown: list = []
    for source in sources:
        for name in names.get(str(source), [str(source)]):
            if name not in shown:
                shown.append(name)
    return shown


def _backup_units(components: list) -> list:
    return [f"monstack-backup@{component['name']}.timer" for component in components]


def plan_hosts(hostvars, hosts: list) -> list:
    """The plan of each host that took part (in inventory order), from the notes the playbook made.

    Returns [{"host", "groups", "address": [addresses] or [] when read from its facts at the run,
    "roles": [roles, in site.yml's order], "units", "ports": [{"port", "proto", "service", "from"}],
    "ssh_from_controller", "firewall": true/false/None (not planned), "backups", "certificate",
    "logs_to", "problems": [{"role", "lines"}]}].
    """
    names = _address_names(hostvars, list(hosts))
    plans = []
    for host in hosts:
        host_vars = hostvars[host]
        if not _value(host_vars, "monstack_plan_only", False):
            continue
        steps = list(_value(host_vars, "__plan_steps", []) or [])
        addresses = [address for address in names if host in names[address]]
        plan = {
            "host": host,
            "groups": sorted(group for group in _value(host_vars, "group_names", []) if group != "ungrouped"),
            "address": [address for address in addresses if address != plan_fact_address(host)],
            "roles": [str(step["role"]) for step in steps],
            "units": [],
            "ports": [],
            "ssh_from_controller": False,
            "firewall": None,
            "backups": None,
            "certificate": None,
            "logs_to": [],
            "problems": [{"role": str(problem["role"]), "lines": _problem_lines(problem["msg"])}
                         for problem in _value(host_vars, "__plan_problems", []) or []],
        }
        for step in steps:
            plan["units"] += [str(unit) for unit in step.get("units") or []]
            if "firewall" in step:
                firewall = step["firewall"]
                plan["firewall"] = bool(firewall["enabled"])
                plan["ssh_from_controller"] = bool(firewall.get("ssh_from_controller"))
                plan["ports"] = sorted(
                    ({"port": int(opening["port"]), "proto": str(opening["proto"]),
                      "service": str(opening["comment"]), "from": _sources(opening["sources"], names)}
                     for opening in firewall.get("openings") or []),
                    key=lambda opening: (opening["port"], opening["proto"], opening["service"]))
            if "backup" in step:
                backup = step["backup"]
                components = list(backup["components"])
                plan["units"] += _backup_units(components)
                settings = backup["settings"]
                remote = settings.get("remote")
                plan["backups"] = {
                    "components": [{"name": str(c["name"]), "data_dir": str(c["data_dir"])} for c in components],
                    "repository": f"{settings['backup_dir']}/repository",
                    "kept": int(settings["retention_count"]),
                    "on_calendar": str(backup["on_calendar"]),
                    "randomized_delay": str(backup["randomized_delay"]),
                    "remote": {"host": str(backup["remote_host"]), "address": str(remote["host"]),
                               "port": int(remote["port"]), "user": str(remote["user"]), "path": str(remote["path"])}
                    if remote else None,
                }
            if "certificate" in step:
                certificate = dict(step["certificate"])
                plan["certificate"] = {
                    "common_name": str(certificate["common_name"]),
                    "names": [str(name) for name in certificate["names"]
                              if str(name).partition(":")[2] != plan_fact_address(host)],
                    "fact_addresses": any(str(name).partition(":")[2] == plan_fact_address(host)
                                          for name in certificate["names"]),
                    "issuer": f"the user's {certificate['user_cert_file']}" if certificate["user_supplied"]
                    else f"the internal CA in {certificate['ca_dir']}",
                    "validity_days": None if certificate["user_supplied"] else int(certificate["validity_days"]),
                    "renew_days": None if certificate["user_supplied"] else int(certificate["renew_days"]),
                    "installed_in": str(certificate["installed_in"]),
                }
            if "logs_to" in step:
                plan["logs_to"] = [str(url) for url in step["logs_to"]]
        plans.append(plan)
    return plans


# How Ansible wraps the message of a filter or lookup that refused what it was given: the message is
# the filter's own (scrape_targets.py, firewall.py and the others name the variable), the wrapping only says where it was raised.
_PLUGIN_FAILED = re.compile(r"^Task failed: .*?The (?:filter|lookup|test) plugin '[^']+' failed: ")
# "<variable>: ..." (or "<variable>[<index>]: ..."), the form of every message that names its setting.
_NAMES_A_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])?: ")


def _problem_lines(message) -> list:
    """The lines of a refusal: the preflights' "<variable>: <what is wrong>" lines as they are, the
    argument_specs' without their heading, a filter's without Ansible's wrapping."""
    lines = []
    for line in (line.strip() for line in str(message).splitlines()):
        wrapped = _PLUGIN_FAILED.match(line)
        if wrapped and _NAMES_A_SETTING.match(line[wrapped.end():]):
            line = line[wrapped.end():]
        if line and line != "Validation of arguments failed:":
            lines.append(line)
    return lines


def plan_problems(plans: list) -> list:
    """Every refusal, one line per setting, each followed by the role and the hosts that refuse it."""
    found: dict = {}
    for plan in plans:
        for problem in plan["problems"]:
            for line in problem["lines"]:
                found.setdefault((line, problem["role"]), []).append(plan["host"])
    return [f"{line}  [{role} on {', '.join(hosts)}]" for (line, role), hosts in found.items()]


_WIDTH = 110


def _wrap(text: str, first: str, indent: int) -> list:
    """`text` after `first`, wrapped at _WIDTH, continuation lines indented to `indent`."""
    return textwrap.wrap(text, _WIDTH, initial_indent=first, subsequent_indent=" " * indent,
                         break_on_hyphens=False, break_long_words=False) or [first.rstrip()]


def _field(label: str, text: str) -> list:
    return _wrap(text, f"  {label:<13}", 15)


def plan_report(plans: list, environment: str, debian_release=12) -> str:
    """The plan as an operator reads it: one section per host, then what was left to the run."""
    hosts = f"{len(plans)} host" + ("" if len(plans) == 1 else "s")
    lines = _wrap(f"Plan of inventory '{environment}', {hosts}, read from the inventory: no host was "
                  "contacted and nothing was changed. Sources are inventory hosts (by name) and networks; a host "
                  "whose inventory gives no IP address is known by the address in its facts, which the run reads.",
                  "", 0)
    for plan in plans:
        lines += ["", plan["host"]]
        lines += _field("groups", ", ".join(plan["groups"]) or "none (what every host gets)")
        lines += _field("address", ", ".join(plan["address"]) or "from its facts, at the run")
        refused = sorted({problem["role"] for problem in plan["problems"]})
        lines += _field("roles", ", ".join(plan["roles"])
                        + (f"; REFUSED: {', '.join(refused)} (see the end)" if refused else ""))
        lines += _field("units", ", ".join(plan["units"]) or "none")
        if plan["firewall"] is False:
            lines += _field("ports", "not fenced: the stack's firewall is switched off here")
        elif plan["ports"]:
            width = max(len(port["service"]) for port in plan["ports"]) + 2
            lines.append(f"  {'ports':<13}{'port':<11}{'service':<{width}}may be reached from")
            for port in plan["ports"]:
                sources = ", ".join(port["from"])
                if port["service"] == "ssh" and plan["ssh_from_controller"]:
                    sources += ", and the address Ansible connects from (at the run)"
                port_proto = f"{port['port']}/{port['proto']}"
                lines += _wrap(sources, f"{'':15}{port_proto:<11}{port['service']:<{width}}", 26 + width)
        if plan["backups"]:
            backups = plan["backups"]
            lines += _field("backups", ", ".join(f"{c['name']} ({c['data_dir']})" for c in backups["components"])
                            + f" into {backups['repository']}, at {backups['on_calendar']} (+ up to "
                              f"{backups['randomized_delay']}), the newest {backups['kept']} kept")
            remote = backups["remote"]
            lines += _field("", f"copied to {remote['host']}, append-only: {remote['user']}@{remote['address']} port "
                                f"{remote['port']}, {remote['path']}" if remote else "no copy on another host")
        if plan["certificate"]:
            certificate = plan["certificate"]
            names = ", ".join(certificate["names"])
            if certificate["fact_addresses"]:
                names += ", and the addresses in its facts (at the run)"
            lines += _field("certificate", f"CN {certificate['common_name']}, from {certificate['issuer']}"
                            + (f", for {certificate['validity_days']} days, renewed {certificate['renew_days']} days "
                               "before it ends" if certificate["validity_days"] else "")
                            + f", installed in {certificate['installed_in']}")
            lines += _field("", f"names: {names}")
        if plan["logs_to"]:
            lines += _field("logs to", ", ".join(plan["logs_to"]))
    lines += [""] + _wrap(
        f"Left to the run, which reads them on the hosts: their addresses (see above), the address Ansible connects "
        f"from (SSH stays open to it where administrators are named), an operator's Redis password file "
        f"(redis_exporter_redis_password_file). On the controller: the .deb files of Grafana, Loki and the log "
        f"shipper (install method deb), checked against their sha256 at the run. What Debian's packages can do was judged "
        f"for Debian {debian_release} (monstack_plan_debian_release).", "", 0)
    return "\n".join(line.rstrip() for line in lines)


class FilterModule:
    def filters(self):
        return {
            "plan_fact_address": plan_fact_address,
            "plan_argument_spec": plan_argument_spec,
            "plan_hosts": plan_hosts,
            "plan_problems": plan_problems,
            "plan_report": plan_report,
        }
