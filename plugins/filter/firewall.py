"""Firewall openings (roles/firewall), derived from the inventory: who may reach which port of a host,
and the preflight's checks of the operator's own openings.

A source host's address is its monitoring_address or ansible_host when those are IP addresses, else
what its facts show (plugins/plugin_utils/monstack/inventory.py: host_addresses).
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.inventory import host_addresses, host_value, port_number as _port  # noqa: E402


def _network(text: str, what: str) -> ipaddress._BaseNetwork:
    try:
        if "%" in str(text):
            raise ValueError("a zone index")
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise AnsibleFilterError(f"{what}: '{text}' is not an IP address or network (for example 10.0.0.0/8)") from None


def firewall_openings(host: str, services: dict, groups: dict, hostvars,
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
        # Inventory data (group_vars/all/ports.yml, or the host's own), as the daemon itself reads it.
        port = _port(host_value(hostvars, host, spec["port_var"], None), spec["port_var"])
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


class FilterModule:
    def filters(self):
        return {
            "firewall_openings": firewall_openings,
            "firewall_cut_advice": firewall_cut_advice,
            "firewall_rules_problems": firewall_rules_problems,
        }
