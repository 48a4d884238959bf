#!/usr/bin/python
"""Directories and symlinks of one daemon, made in one module run.

The file module in a loop costs one round trip per path on every run, converged or not; this checks
and makes them all in one, with the file module's semantics for what it is given (see DOCUMENTATION).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: monstack_paths
short_description: Make directories and symlinks with their owner, group and mode, in one run
description:
  - For each entry, C(state=directory) makes the directory (and missing parents, as mkdir -p) and sets
    the owner, group and mode given; C(state=link) makes a symlink to C(src), replacing what is there
    (as the file module with force). Unset owner, group or mode are left as they are.
  - Supports check mode and diff mode. Fails, changing nothing more, on a path that exists as
    something else than a directory where a directory is wanted.
options:
  paths:
    description: Entries with C(path), C(state) (directory or link), and C(src), C(owner), C(group), C(mode).
    type: list
    elements: dict
    required: true
author: monstack
"""

RETURN = r"""
changed_paths:
  description: The paths that were (or in check mode would be) changed, in the order given.
  type: list
  elements: str
  returned: always
"""

import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule


def _uid(name):
    return None if name is None else pwd.getpwnam(name).pw_uid


def _gid(name):
    return None if name is None else grp.getgrnam(name).gr_gid


def _describe(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "state": "absent"}
    if os.path.islink(path):
        return {"path": path, "state": "link", "src": os.readlink(path)}
    state = "directory" if os.path.isdir(path) else "file"
    return {"path": path, "state": state, "owner": pwd.getpwuid(info.st_uid).pw_name if _known_uid(info.st_uid) else info.st_uid,
            "group": grp.getgrgid(info.st_gid).gr_name if _known_gid(info.st_gid) else info.st_gid,
            "mode": "0%03o" % (info.st_mode & 0o7777)}


def _known_uid(uid):
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _known_gid(gid):
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False


def ensure(entry, check_mode):
    """Make one path as the entry says; returns (changed, before, after)."""
    path, state = entry["path"], entry.get("state") or "directory"
    before = _describe(path)
    if state == "link":
        src = entry["src"]
        if before["state"] == "link" and before["src"] == src:
            return False, before, before
        after = {"path": path, "state": "link", "src": src}
        if not check_mode:
            if before["state"] == "directory":
                raise ValueError(f"{path} is a directory; refusing to replace it with a link to {src}")
            temporary = f"{path}.monstack-tmp"
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(src, temporary)
            os.rename(temporary, path)
        return True, before, after
    if state != "directory":
        raise ValueError(f"{path}: state must be directory or link, not {state}")
    if before["state"] not in ("absent", "directory"):
        raise ValueError(f"{path} exists as a {before['state']}, not a directory")
    mode = entry.get("mode")
    mode = int(str(mode), 8) if mode is not None else None
    uid, gid = _uid(entry.get("owner")), _gid(entry.get("group"))
    after = dict(before, state="directory")
    if entry.get("owner") is not None:
        after["owner"] = entry["owner"]
    if entry.get("group") is not None:
        after["group"] = entry["group"]
    if mode is not None:
        after["mode"] = "0%03o" % mode
    if before == after:
        return False, before, after
    if not check_mode:
        os.makedirs(path, exist_ok=True)
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        if mode is not None:
            os.chmod(path, mode)
        after = _describe(path)
    return True, before, after


def main():
    module = AnsibleModule(argument_spec={"paths": {"type": "list", "elements": "dict", "required": True}},
                           supports_check_mode=True)
    changed_paths, diffs = [], []
    for entry in module.params["paths"]:
        try:
            changed, before, after = ensure(entry, module.check_mode)
        except (KeyError, ValueError, OSError) as error:
            module.fail_json(msg=f"{entry.get('path')}: {error}", changed_paths=changed_paths)
        if changed:
            changed_paths.append(entry["path"])
            diffs.append({"before": before, "after": after, "before_header": entry["path"],
                          "after_header": entry["path"]})
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
