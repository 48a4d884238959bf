"""What each host backs up (roles/backup), derived from the inventory: its stateful components and
their data directories."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.inventory import host_value  # noqa: E402
from monstack.listen import split_listen_address  # noqa: E402

# Refused as a data directory: the backup swaps the whole directory back on restore.
_SHARED_DIRECTORIES = ("", "/var", "/var/lib", "/etc", "/usr")


def backup_components(catalogue: dict, host: str, groups: dict, hostvars, disabled: list | None = None) -> list:
    """The stateful components `host` runs, each with its data directory resolved.

    catalogue: {name: {"group", "data_var", "only_when": optional {"var", "equals"}, "settings": optional
    {key: variable}, ...}}. A component is on the host when its group holds it, it is not in `disabled`,
    and the host's value of only_when.var equals only_when.equals. Its data directory is the host's value
    of data_var (group_vars/all/data.yml, or the inventory's), its settings the host's values of those
    variables (None where unset). Returns the entries, with "name" and "data_dir", sorted by name.
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
        condition = spec.get("only_when")
        if condition and str(host_value(hostvars, host, condition["var"], None)) != str(condition["equals"]):
            continue
        data_dir = host_value(hostvars, host, spec["data_var"], None)
        if data_dir in (None, ""):
            raise AnsibleFilterError(f"{host}: {spec['data_var']} is not set, so its {name} data cannot be backed "
                                     f"up: group_vars/all/data.yml defines it for the stack; set it there or in "
                                     f"the inventory")
        data_dir = str(data_dir)
        if not data_dir.startswith("/") or data_dir.rstrip("/") in _SHARED_DIRECTORIES:
            raise AnsibleFilterError(f"{spec['data_var']}: '{data_dir}' is not a data directory to back up "
                                     f"and restore (an absolute path of its own, such as /var/lib/{name})")
        entry = {key: value for key, value in spec.items() if key not in ("group", "only_when")}
        if "settings" in spec:  # {key: variable}: more of the daemon's variables, resolved as data_var is
            entry["settings"] = {key: host_value(hostvars, host, var, None) for key, var in spec["settings"].items()}
        found.append(entry | {"name": name, "data_dir": data_dir.rstrip("/")})
    return found


def backup_server_addresses(listen_address, own_addresses: list) -> list:
    """The addresses beyond loopback a backup run must reach to ask a server on this host for a snapshot
    (its unit may reach loopback only): none when the server listens on every address or on loopback
    (the run asks 127.0.0.1 or ::1), the address itself when it is one, and for a host name the host's
    own addresses, one of which it names (a server binds only an address of its host)."""
    host = split_listen_address(str(listen_address or ""))["host"].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return sorted({str(ipaddress.ip_address(str(own).split("%")[0])) for own in own_addresses or []})
    return [] if address.is_loopback else [str(address)]


class FilterModule:
    def filters(self):
        return {"backup_components": backup_components, "backup_server_addresses": backup_server_addresses}
