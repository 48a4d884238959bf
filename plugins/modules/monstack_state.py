#!/usr/bin/python
"""The state of one piece of the stack on a host, read and put right in one module run.

On the daily rerun nearly all of the time goes to round trips: a group, a user, a directory, a file,
a unit each cost one module run just to find them already right. This module is given all of them
for one role step (the account of a daemon, its configuration files and unit, the host certificate)
and checks them in one run, changing only what differs, in the order groups, users, paths, Debian
packages, files, units. Files arrive as content rendered on the controller (a template lookup) and
replace the live one only after their `validate` command accepted the new text.

It needs nothing but Python's standard library on the host. The controller writes the task's
arguments into the module's text as JSON (Ansible's JSONARGS module style, piped like any module
when pipelining is on), so a run does not import Ansible's module library: that import, compiled
afresh from its zip on every run, cost each run about 0.3 s of the host's CPU, several times what
checking a role's state takes (docs/benchmark.md). What that library did for this module is done
here: the arguments are checked against the spec below, secret content is masked in everything
returned, and the line logged on the host names what was given, never the files' content.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: monstack_state
short_description: Groups, users, directories, links, files and units of one role step, in one run
description:
  - C(groups) are made as system groups when missing.
  - C(users) are made as system users without a home when missing; an existing user gets the primary
    group, shell and home given, and is added to the supplementary C(groups) (never removed from any).
  - C(paths) are directories (made with missing parents) or symlinks (replaced when they point
    elsewhere), with the owner, group and mode given; unset ones are left as they are. A path with
    C(state=absent) is a file or symlink removed when present (a directory is refused, not emptied).
  - C(packages) are Debian packages installed (after an C(apt-get update), without recommends, keeping
    changed conffiles) when dpkg does not list them as installed; an installed one is never upgraded.
  - C(files) are regular files with the C(content) given. New content is first run through
    C(validate) (a command with C(%s) for the new file, given a copy in a private directory) when
    given, then written beside the file and renamed over it; a refused file leaves the live one and
    its directory untouched and fails the task. A C(secret) file's content is
    masked in the module's output and never shown in a diff, nor is its validator's output.
  - After a file under /etc/systemd changed, systemd reloads its units. Then C(units) are enabled
    and/or started when they are not already, or stopped when running (C(state=stopped)).
  - Supports check mode (changes nothing, validates nothing) and diff mode.
options:
  groups:
    description: Group names, made as system groups when missing.
    type: list
    elements: str
    default: []
  users:
    description: Entries with C(name), C(group) (primary), C(groups), C(shell), C(home).
    type: list
    elements: dict
    default: []
  paths:
    description: Entries with C(path), C(state) (directory, link or absent), and C(src), C(owner), C(group), C(mode).
    type: list
    elements: dict
    default: []
  packages:
    description: Debian package names, installed when missing.
    type: list
    elements: str
    default: []
  files:
    description: Entries with C(dest), C(content), C(owner), C(group), C(mode), C(validate), C(secret),
      and C(on_change) (a word for what a change asks of the service, such as restart or reload, returned
      in C(on_change)), written in the order given (a configuration after the files it names).
    type: list
    elements: dict
    default: []
  units:
    description: Entries with C(name), C(enabled) (true to enable) and C(state) (started, stopped, or unset).
    type: list
    elements: dict
    default: []
  requires:
    description:
      - Paths (a daemon's binary) without which the C(files) and the units to enable or start are left
        alone, looked for after the packages; the missing ones are returned in C(missing), so the
        caller can provide them (unpack a tarball) and run the rest then.
    type: list
    elements: str
    default: []
author: monstack
"""

RETURN = r"""
changed_items:
  description: What was (in check mode, would be) changed, in order, as "group NAME", "user NAME",
    a path, "package NAME", a file's dest, "unit NAME".
  type: list
  elements: str
  returned: always
changed_files:
  description: The dests of the files changed.
  type: list
  elements: str
  returned: always
on_change:
  description: The C(on_change) words of the files changed, each once, so the caller notifies the
    handlers they name without looking at the files again.
  type: list
  elements: str
  returned: always
changed_packages:
  description: The packages installed.
  type: list
  elements: str
  returned: always
changed_paths:
  description: The paths (directories and links) changed.
  type: list
  elements: str
  returned: always
missing:
  description: The paths of C(requires) that are missing; when any is, C(files) and the units to enable
    or start were left alone.
  type: list
  elements: str
  returned: always
"""

import grp
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import syslog
import tempfile
import traceback

# The task's arguments, as JSON: the controller replaces the marker when it builds the module.
ARGUMENTS = r"""<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"""

SYSTEMD_DIRS = ("/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/")
# What `systemctl show` calls enabled: enabling these again would change nothing.
ENABLED_STATES = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated"}
ACTIVE_STATES = {"active", "activating", "reloading"}


class StateError(Exception):
    """Something that cannot be put right here: the task fails with this message."""


def _name_or_id(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return number


def describe_path(path):
    """The state of a path as the module compares it: absent, link (src), directory or file (owner, group, mode)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "state": "absent"}
    if os.path.islink(path):
        return {"path": path, "state": "link", "src": os.readlink(path)}
    return {"path": path, "state": "directory" if os.path.isdir(path) else "file",
            "owner": _name_or_id(pwd.getpwuid, info.st_uid), "group": _name_or_id(grp.getgrgid, info.st_gid),
            "mode": "0%03o" % (info.st_mode & 0o7777)}


def _mode(value):
    """'0644', '644' or an integer YAML already read as octal (0644 -> 420)."""
    if value is None or isinstance(value, int):
        return value
    return int(str(value), 8)


def _ids(entry):
    uid = None if entry.get("owner") is None else pwd.getpwnam(entry["owner"]).pw_uid
    gid = None if entry.get("group") is None else grp.getgrnam(entry["group"]).gr_gid
    return uid, gid


def _wanted_attributes(before, entry):
    after = dict(before)
    for key in ("owner", "group"):
        if entry.get(key) is not None:
            after[key] = entry[key]
    if entry.get("mode") is not None:
        after["mode"] = "0%03o" % _mode(entry["mode"])
    return after


def _set_attributes(path, entry):
    uid, gid = _ids(entry)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if entry.get("mode") is not None:
        os.chmod(path, _mode(entry["mode"]))


def ensure_path(entry, check_mode):
    """A directory, a symlink, or no file, as the entry says: (changed, before, after)."""
    path, state = entry["path"], entry.get("state") or "directory"
    before = describe_path(path)
    if state == "absent":
        if before["state"] == "absent":
            return False, before, before
        if before["state"] == "directory":
            raise StateError(f"{path} is a directory; refusing to remove it")
        if not check_mode:
            os.unlink(path)
        return True, before, {"path": path, "state": "absent"}
    if state == "link":
        src = entry["src"]
        if before["state"] == "link" and before["src"] == src:
            return False, before, before
        if before["state"] == "directory":
            raise StateError(f"{path} is a directory; refusing to replace it with a link to {src}")
        if not check_mode:
            temporary = f"{path}.monstack-tmp"
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(src, temporary)
            os.rename(temporary, path)
        return True, before, {"path": path, "state": "link", "src": src}
    if state != "directory":
        raise StateError(f"{path}: state must be directory, link or absent, not {state}")
    if before["state"] not in ("absent", "directory"):
        raise StateError(f"{path} exists as a {before['state']}, not a directory")
    after = _wanted_attributes(dict(before, state="directory"), entry)
    if before == after:
        return False, before, after
    if not check_mode:
        os.makedirs(path, exist_ok=True)
        _set_attributes(path, entry)
        after = describe_path(path)
    return True, before, after


def ensure_file(module, entry, check_mode):
    """A regular file with the content and attributes given: (changed, diff or None)."""
    dest, content = entry["dest"], (entry.get("content") or "").encode("utf-8")
    before = describe_path(dest)
    if before["state"] not in ("absent", "file"):
        raise StateError(f"{dest} exists as a {before['state']}, not a file")
    if not os.path.isdir(os.path.dirname(dest)):
        raise StateError(f"{dest}: the directory {os.path.dirname(dest)} does not exist")
    old = b""
    if before["state"] == "file":
        with open(dest, "rb") as handle:
            old = handle.read()
    after = _wanted_attributes(dict(before, state="file"), entry)
    same_content = before["state"] == "file" and old == content
    if same_content and before == after:
        return False, None
    diff = {"before_header": dest, "after_header": dest}
    secret = entry.get("secret")
    if secret:
        diff.update(before="(secret content hidden)\n" if old else "", after="(secret content hidden)\n")
    elif same_content:
        diff.update(before=before, after=after)
    else:
        diff.update(before=old.decode("utf-8", "replace"), after=content.decode("utf-8", "replace"))
    if check_mode:
        return True, diff
    if same_content:
        _set_attributes(dest, entry)
        return True, diff
    if entry.get("validate"):
        validate(module, entry, content)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=f".{os.path.basename(dest)}.")
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(content)
        _set_attributes(temporary, entry)
        os.rename(temporary, dest)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return True, diff


def validate(module, entry, content):
    """Run the entry's validate command on the new content, in a private directory away from the
    live one (so a refused file leaves no trace beside it), as the copy and template modules do:
    %s is the file (%%s a literal %s), split as a shell would, run without one."""
    dest, command = entry["dest"], entry["validate"]
    if "%s" not in command:
        raise StateError(f"{dest}: validate must contain %s for the new file: {command}")
    directory = tempfile.mkdtemp(prefix="monstack-validate-")
    try:
        candidate = os.path.join(directory, os.path.basename(dest))
        with open(candidate, "wb") as output:
            output.write(content)
        _set_attributes(candidate, entry)
        rc, out, err = module.run_command(shlex.split(command % candidate))
        if rc != 0:
            said = ("its output is hidden, as the file holds secrets: run the check on the host to see why"
                    if entry.get("secret") else (out + err).strip())
            raise StateError(f"{dest}: failed to validate with `{command}` (rc {rc}); the live file is "
                             f"unchanged:\n{said}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def ensure_group(module, name, check_mode):
    try:
        grp.getgrnam(name)
        return False
    except KeyError:
        pass
    if not check_mode:
        module.run_command(["groupadd", "--system", name], check_rc=True)
    return True


def _user_state(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return {"group": _name_or_id(grp.getgrgid, entry.pw_gid), "shell": entry.pw_shell, "home": entry.pw_dir,
            "groups": sorted(group.gr_name for group in grp.getgrall() if name in group.gr_mem)}


def ensure_user(module, user, check_mode):
    """A system user as the entry says: (changed, before, after)."""
    name = user["name"]
    shell, home = user.get("shell") or "/usr/sbin/nologin", user.get("home") or "/nonexistent"
    wanted_groups = [group for group in (user.get("groups") or []) if group != user.get("group")]
    for group in wanted_groups + ([user["group"]] if user.get("group") else []):
        if check_mode and group in module.params["groups"]:
            continue
        try:
            grp.getgrnam(group)
        except KeyError as error:
            raise StateError(f"user {name}: the group {group} does not exist") from error
    before = _user_state(name)
    if before is None:
        after = {"group": user.get("group"), "shell": shell, "home": home, "groups": sorted(wanted_groups)}
        command = ["useradd", "--system", "--no-create-home", "--shell", shell, "--home-dir", home]
        command += ["--gid", user["group"]] if user.get("group") else []
        command += ["--groups", ",".join(wanted_groups)] if wanted_groups else []
        if not check_mode:
            module.run_command(command + [name], check_rc=True)
        return True, {}, after
    after = dict(before, shell=shell, home=home, groups=sorted(set(before["groups"]) | set(wanted_groups)))
    if user.get("group"):
        after["group"] = user["group"]
    if after == before:
        return False, before, after
    command = ["usermod"]
    command += ["--gid", after["group"]] if after["group"] != before["group"] else []
    command += ["--shell", shell] if shell != before["shell"] else []
    command += ["--home", home] if home != before["home"] else []
    missing = sorted(set(wanted_groups) - set(before["groups"]))
    command += ["--append", "--groups", ",".join(missing)] if missing else []
    if not check_mode:
        module.run_command(command + [name], check_rc=True)
    return True, before, after


def ensure_packages(module, names, check_mode):
    """Install the Debian packages dpkg does not list as installed: the list of those."""
    if not names:
        return []
    # rc 1 when a name is unknown to dpkg: its line is missing, which reads as not installed.
    _, out, _ = module.run_command(["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Status}\n", "--"]
                                   + list(names))
    installed = {line.split()[0] for line in out.splitlines() if line.split()[1:] == ["installed"]}
    missing = [name for name in names if name not in installed]
    if missing and not check_mode:
        environment = {"DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"],
                        ["apt-get", "install", "--yes", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef",
                         "-o", "Dpkg::Options::=--force-confold", "--"] + missing):
            rc, out, err = module.run_command(command, environ_update=environment)
            if rc != 0:
                raise StateError(f"{' '.join(command[:2])} failed (rc {rc}) installing {', '.join(missing)}:\n"
                                 f"{(err or out).strip()[-2000:]}")
    return missing


def unit_states(module, names):
    """`systemctl show` of every unit in one call: {name: {LoadState, ActiveState, UnitFileState}}."""
    if not names:
        return {}
    rc, out, err = module.run_command(
        ["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState", "--"] + list(names))
    if rc != 0:
        raise StateError(f"systemctl show failed (rc {rc}): {err.strip()}")
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in out.strip().split("\n\n")]
    if len(blocks) != len(names):
        raise StateError(f"systemctl show answered for {len(blocks)} of {len(names)} units")
    return dict(zip(names, blocks))


def _systemctl(module, action, name):
    rc, _, err = module.run_command(["systemctl", action, "--", name])
    if rc != 0:
        raise StateError(f"systemctl {action} {name} failed (rc {rc}): {err.strip()}")


def ensure_units(module, units, new_files, check_mode):
    """Enable and start (or stop) the units that are not already: the list of what changed."""
    states = unit_states(module, [unit["name"] for unit in units])
    changed = []
    for unit in units:
        name, state = unit["name"], states[unit["name"]]
        if unit.get("state") == "stopped":
            # A unit that is not there, or masked and not running, has nothing to stop.
            if state.get("ActiveState") in ACTIVE_STATES:
                changed.append(f"unit {name}")
                if not check_mode:
                    _systemctl(module, "stop", name)
            continue
        if state.get("LoadState") == "not-found":
            # A template's instance (name@x.timer) is loaded from name@.timer.
            if check_mode and any(path.endswith("/" + re.sub(r"@[^.]*\.", "@.", name)) for path in new_files):
                changed.append(f"unit {name}")  # its file is new in this dry run
                continue
            raise StateError(f"unit {name} does not exist")
        actions = []
        if unit.get("enabled") and state.get("UnitFileState") not in ENABLED_STATES:
            actions.append("enable")
        if unit.get("state") == "started" and state.get("ActiveState") not in ACTIVE_STATES:
            actions.append("start")
        if actions:
            changed.append(f"unit {name}")
            for action in actions if not check_mode else []:
                _systemctl(module, action, name)
    return changed


def run(module, result):
    params, check_mode = module.params, module.check_mode

    def note(item, diff=None):
        result["changed_items"].append(item)
        if diff:
            result["diff"].append(diff)

    for name in params["groups"]:
        if ensure_group(module, name, check_mode):
            note(f"group {name}", {"before": "", "after": f"group {name}\n", "after_header": f"group {name}"})
    for user in params["users"]:
        changed, before, after = ensure_user(module, user, check_mode)
        if changed:
            note(f"user {user['name']}", {"before": before, "after": after, "before_header": f"user {user['name']}",
                                           "after_header": f"user {user['name']}"})
    for entry in params["paths"]:
        changed, before, after = ensure_path(entry, check_mode)
        if changed:
            result["changed_paths"].append(entry["path"])
            note(entry["path"], {"before": before, "after": after, "before_header": entry["path"],
                                 "after_header": entry["path"]})
    for name in ensure_packages(module, params["packages"], check_mode):
        result["changed_packages"].append(name)
        note(f"package {name}", {"before": "", "after": f"package {name}\n", "after_header": f"package {name}"})
    result["missing"] = [path for path in params["requires"] if not os.path.exists(path)]
    # Without what they need, the files (a configuration its checker cannot check yet) and the units to
    # start wait for the caller's next run of the module; stopping a unit never waits.
    ready = not result["missing"]
    for entry in params["files"] if ready else []:
        changed, diff = ensure_file(module, entry, check_mode)
        if changed:
            result["changed_files"].append(entry["dest"])
            if entry.get("on_change") and entry["on_change"] not in result["on_change"]:
                result["on_change"].append(entry["on_change"])
            note(entry["dest"], diff)
    if not check_mode and any(path.startswith(SYSTEMD_DIRS) for path in result["changed_items"]):
        module.run_command(["systemctl", "daemon-reload"], check_rc=True)
    units = [unit for unit in params["units"] if ready or unit.get("state") == "stopped"]
    for item in ensure_units(module, units, result["changed_items"], check_mode):
        note(item)


# The arguments: each a list of these elements; a file entry's keys (dest required).
ARGUMENT_LISTS = {"groups": str, "users": dict, "paths": dict, "packages": str, "files": dict, "units": dict,
                  "requires": str}
FILE_KEYS = frozenset({"dest", "content", "owner", "group", "mode", "validate", "secret", "on_change"})
MASK = "********"


def _boolean(name, value):
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", "none", ""):
        return False
    raise StateError(f"{name} must be a boolean, not {value!r}")


def parse_arguments(text):
    """The module's parameters from the controller's JSON, checked as an argument spec would:
    (params, check_mode, diff_mode). Ansible's own `_ansible_*` settings are read or left aside."""
    given = json.loads(text)
    unknown = sorted(name for name in given if name not in ARGUMENT_LISTS and not name.startswith("_ansible_"))
    if unknown:
        raise StateError(f"Unsupported parameters for monstack_state: {', '.join(unknown)}; "
                         f"supported: {', '.join(ARGUMENT_LISTS)}")
    params = {}
    for name, element in ARGUMENT_LISTS.items():
        value = given.get(name)
        value = [] if value is None else value
        if not isinstance(value, list):
            raise StateError(f"{name} must be a list, not {type(value).__name__}")
        if element is str:
            if any(isinstance(item, (dict, list, bool)) or item is None for item in value):
                raise StateError(f"{name} must be a list of strings: {value!r}")
            value = [str(item) for item in value]
        elif not all(isinstance(item, dict) for item in value):
            raise StateError(f"{name} must be a list of dictionaries")
        params[name] = value
    files = []
    for entry in params["files"]:
        unknown = sorted(set(entry) - FILE_KEYS)
        if unknown or not entry.get("dest"):
            raise StateError(f"files: every entry needs a dest and takes only {', '.join(sorted(FILE_KEYS))} "
                             f"(given {', '.join(sorted(entry))})")
        content = entry.get("content")
        if content is not None and not isinstance(content, str):
            raise StateError(f"files: the content of {entry['dest']} must be a string")
        files.append(dict(entry, dest=os.path.expanduser(os.path.expandvars(str(entry["dest"]))),
                          content=content or "", secret=_boolean(f"files: secret of {entry['dest']}",
                                                                  entry.get("secret", False))))
    params["files"] = files
    return (params, _boolean("_ansible_check_mode", given.get("_ansible_check_mode", False)),
            _boolean("_ansible_diff", given.get("_ansible_diff", False)))


class Host:
    """What the functions above are given as `module`: the parameters, check mode, and a way to run
    commands (without a shell, in the C locale, never reading the module's stdin)."""

    def __init__(self, params, check_mode=False):
        self.params, self.check_mode = params, check_mode

    def run_command(self, args, check_rc=False, environ_update=None):
        environment = dict(os.environ, LC_ALL="C", **(environ_update or {}))
        # groupadd, useradd and usermod live in the sbin directories a login shell's PATH may lack.
        path = environment.get("PATH", "/usr/bin:/bin").split(":")
        environment["PATH"] = ":".join(path + [entry for entry in ("/usr/sbin", "/sbin") if entry not in path])
        try:
            done = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True, env=environment,
                                  check=False)
            rc, out, err = (done.returncode, done.stdout.decode("utf-8", "replace"),
                            done.stderr.decode("utf-8", "replace"))
        except OSError as error:
            rc, out, err = 127, "", str(error)
        if check_rc and rc != 0:
            raise StateError(f"{' '.join(args)} failed (rc {rc}): {(err or out).strip()}")
        return rc, out, err


def invocation_line(params):
    """The line logged on the host for a run: what it was given, never the files' content (every run
    would otherwise log whole configurations, and secrets among them)."""
    given = {"files": [entry.get("dest") for entry in params.get("files") or []],
             "paths": [entry.get("path") for entry in params.get("paths") or []],
             "units": [unit.get("name") for unit in params.get("units") or []]}
    given.update({name: params.get(name) for name in ("groups", "packages", "requires")})
    given["users"] = [user.get("name") for user in params.get("users") or []]
    return "Invoked with " + " ".join(f"{name}={value}" for name, value in given.items())


def mask(value, secrets):
    """`value` with every secret's text replaced by MASK, in every string it holds."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {key: mask(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, secrets) for item in value]
    return value


def respond(result, secrets):
    """Print the result for the controller and end the run (exit 1 when it failed)."""
    print(json.dumps(mask(result, secrets)))
    sys.exit(1 if result.get("failed") else 0)


def main():
    result = {"changed_items": [], "changed_files": [], "changed_paths": [], "changed_packages": [], "on_change": [],
              "missing": [], "diff": []}
    secrets, diff_mode = [], False
    try:
        params, check_mode, diff_mode = parse_arguments(ARGUMENTS)
        # A secret file's content is masked in everything the module returns, longest first so a
        # secret holding another is masked whole.
        secrets = sorted({entry["content"] for entry in params["files"] if entry["secret"] and entry["content"]},
                         key=len, reverse=True)
        syslog.openlog("ansible-monstack_state", 0, syslog.LOG_USER)
        syslog.syslog(syslog.LOG_INFO, invocation_line(params))
        run(Host(params, check_mode), result)
    except Exception as error:  # pylint: disable=broad-except # every failure still answers in JSON
        # What was changed before the failure is still reported, so handlers and the operator know.
        expected = isinstance(error, (StateError, KeyError, OSError, ValueError))
        extra = {} if expected else {"exception": traceback.format_exc()}
        respond(dict({key: value for key, value in result.items() if key != "diff"}, failed=True,
                     changed=bool(result["changed_items"]),
                     msg=str(error) if expected else f"monstack_state: {type(error).__name__}: {error}", **extra),
                secrets)
    if not diff_mode:
        result.pop("diff")
    respond(dict(result, changed=bool(result["changed_items"])), secrets)


if __name__ == "__main__":
    main()
