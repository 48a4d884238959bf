"""What each host backs up (roles/backup), derived from the inventory: its stateful components and
their data directories."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

# Under the names the function body has always used (it moved here from scrape_targets.py unchanged).
from monstack.inventory import host_value as _host_value, role_defaults as _role_defaults  # noqa: E402


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
        return {"backup_components": backup_components}
