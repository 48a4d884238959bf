"""What roles/daemon hands to its module runs (plugins/modules/monstack_state.py), and what their
results ask of the caller's handlers: built here, where each list is tested
(tests/unit/test_daemon_state_filters.py), instead of in Jinja in the role's vars.

All take the daemon's completed settings (daemon_settings, plugins/filter/daemon_web.py):

daemon_vendor_package: whether the daemon comes as a vendor's package (its APT repository, or a .deb),
installed by the role's vendor steps before the account step.

daemon_account: the account step's groups, users, paths (the daemon's directories, an archive's
install directory, /dev/null links masking the units a Debian package ships), Debian packages, and a
stop of each masked unit.

daemon_files: the service step's files: the caller's (daemon_files, completed with their owner,
group, mode and what a change asks), then the web configuration, then the unit.

daemon_service_units: the daemon's own unit, enabled and started.

daemon_handlers: the caller's handlers that the module runs' results ask for: "Restart <name>" for a
changed file that restarts it or a changed package, "Reload <name>" for one that reloads it, and any
other handler a file names.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

_UNIT_DIR = "/etc/systemd/system"


def _install(settings) -> dict:
    if not isinstance(settings, Mapping) or not isinstance(settings.get("install"), Mapping):
        raise AnsibleFilterError("the daemon filters need the completed daemon settings (daemon_settings)")
    return settings["install"]


def daemon_vendor_package(settings) -> bool:
    install = _install(settings)
    return install.get("method") == "deb" or bool((install.get("apt_repository") or {}).get("url"))


def daemon_account(settings, install_dir) -> dict:
    install = _install(settings)
    method, group = install.get("method"), settings["group"]
    paths = [dict({"group": group}, **directory) for directory in settings.get("directories") or []]
    if method == "archive":
        paths.append({"path": str(install_dir), "owner": "root", "group": "root", "mode": "0755"})
    masked = list(install.get("package_units") or []) if method in ("package", "deb") else []
    paths += [{"path": f"{_UNIT_DIR}/{unit}.service", "state": "link", "src": "/dev/null"} for unit in masked]
    packages = [install["package"]] if method == "package" and not daemon_vendor_package(settings) else []
    return {
        "groups": [group],
        "users": [{"name": settings["user"], "group": group, "groups": list(settings.get("groups") or []),
                   "shell": "/usr/sbin/nologin", "home": "/nonexistent"}],
        "paths": paths,
        "packages": packages + list(install.get("extra_packages") or []),
        "units": [{"name": f"{unit}.service", "state": "stopped"} for unit in masked],
    }


def daemon_files(settings, files, unit_path, unit, web_config=None) -> list:
    if not isinstance(files, list) or not all(isinstance(entry, Mapping) for entry in files):
        raise AnsibleFilterError("daemon_files must be a list of file entries (dest, content or template, ...)")
    group = settings["group"]
    defaults = {"owner": "root", "group": group, "mode": "0640", "secret": False, "on_change": "restart"}
    entries = [dict(defaults, **entry) for entry in files]
    if settings.get("web_config") is not None:
        # The exporter toolkit reads it again on every connection: a change asks nothing of the daemon.
        entries.append({"dest": f"/etc/{settings['name']}/web-config.yml", "owner": "root", "group": group,
                        "mode": "0640", "secret": True, "on_change": "none", "content": web_config})
    entries.append({"dest": str(unit_path), "owner": "root", "group": "root", "mode": "0644",
                    "on_change": "restart", "content": unit})
    return entries


def daemon_service_units(settings) -> list:
    return [{"name": f"{settings['name']}.service", "enabled": True, "state": "started"}]


def daemon_handlers(results, name) -> list:
    results = [result for result in (results or []) if isinstance(result, Mapping)]
    on_change = [word for result in results for word in result.get("on_change") or []]
    packages = any(result.get("changed_packages") for result in results)
    handlers = [f"Restart {name}"] if "restart" in on_change or packages else []
    handlers += [f"Reload {name}"] if "reload" in on_change else []
    for word in on_change:
        if word not in ("restart", "reload", "none") and word not in handlers:
            handlers.append(word)
    return handlers


class FilterModule:
    def filters(self):
        return {"daemon_vendor_package": daemon_vendor_package, "daemon_account": daemon_account,
                "daemon_files": daemon_files, "daemon_service_units": daemon_service_units,
                "daemon_handlers": daemon_handlers}
