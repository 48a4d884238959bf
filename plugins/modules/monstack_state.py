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
  - C(paths) are directories or symlinks (replaced when they point elsewhere), with the owner, group
    and mode given; unset ones are left as they are. A directory's missing parents are made root:root
    0755. A directory with C(create_only) is made when missing and otherwise left exactly as it is (a
    parent such as /var/lib/prometheus that may belong to someone else); one of SYSTEM_DIRECTORIES
    is refused without it. A path with C(state=absent) is a file or symlink removed when present (a
    directory is refused, not emptied).
  - Every path and dest must be absolute and normalised. Every change goes through directory file
    descriptors, never through a symbolic link a user other than root could have placed. A link on
    the way is followed only when the directory holding it is root's and writable by no one else,
    and the path itself is never followed.
  - C(packages) are Debian packages installed (after an C(apt-get update), without recommends, keeping
    changed conffiles) when dpkg does not list them as installed; an installed one is never upgraded.
  - C(files) are regular files with the C(content) given. New content is first run through
    C(validate) (a command with C(%s) for the new file, given a copy in a private directory) when
    given, then written beside the file and renamed over it; a refused file leaves the live one and
    its directory untouched and fails the task. A C(secret) file's content is
    masked in the module's output and never shown in a diff, nor is its validator's output.
  - With C(previous_dir), the state of each file before this change is kept there (C(previous=keep)
    or C(fresh)), put back (C(restore)) or dropped (C(forget)). A failed change is rolled back by a
    run with C(previous=restore) and its units C(restarted).
  - After a file under /etc/systemd changed (or was put back), systemd reloads its units. Then
    C(units) are enabled and/or started when they are not already, restarted (C(state=restarted)),
    or stopped when running (C(state=stopped)).
  - Supports check mode (changes, validates, records and puts back nothing) and diff mode.
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
    description:
      - Entries with C(path), C(state) (directory, link or absent), and C(src), C(owner), C(group), C(mode).
      - C(create_only) (boolean, default false), for a directory, makes it when missing and leaves an
        existing one exactly as it is (owner, group and mode unchanged, not reported).
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
      in C(on_change)), written in the order given (a configuration after the files it names). The
      directory of a dest must exist. An existing file keeps the owner, group and mode not given; a
      new one is root's, mode 0600, unless given.
    type: list
    elements: dict
    default: []
  units:
    description: Entries with C(name), C(enabled) (true to enable) and C(state) (started, stopped,
      restarted, or unset). C(restarted) always restarts the unit, after the files and any daemon-reload.
    type: list
    elements: dict
    default: []
  requires:
    description:
      - Paths (a daemon's binary) without which the C(files) and the units to enable, start or restart are
        left alone, looked for after the packages; the missing ones are returned in C(missing), so the
        caller can provide them (unpack a tarball) and run the rest then.
    type: list
    elements: str
    default: []
  listeners_open:
    description:
      - The ports (C(PORT/tcp) or C(PORT/udp)) another host may reach once this run is done, for a step
        that loads a firewall. Given, the host's listening sockets (TCP in LISTEN, UDP bound and not
        connected; not those on a loopback address) are read before anything changes, and any whose
        port is neither here nor in C(listeners_closed) fails the task, changing nothing; each such
        listener is returned in C(cut_listeners), with its address and process.
    type: list
    elements: str
    default: []
  listeners_closed:
    description: Ports (C(PORT/tcp), C(PORT/udp)) the operator closes on purpose, listener or not.
    type: list
    elements: str
    default: []
  previous_dir:
    description:
      - Where the state of the C(files) before this change is kept, for one daemon
        (/var/lib/monstack/previous/NAME). It holds C(manifest.json) and a copy of each file's content,
        all root's, 0600; the directory is root:root 0700 (made when first needed, its missing parents
        root 0755).
      - An absolute, normalised path, never a symlink, nor one of SYSTEM_DIRECTORIES.
    type: str
    default: ""
  previous:
    description:
      - What to do with C(previous_dir) (required for any choice but keep).
      - C(keep) records, before a file of C(files) is changed, its state (absent, or its content,
        owner, group and mode) unless its dest is already recorded. The first record wins, so every
        run of one play rolls back to the state before the play.
      - C(fresh) first drops what an earlier play left there, then records as C(keep).
      - C(restore) puts every recorded file back as it was (a file recorded absent is removed),
        reloads systemd when a unit file was among them, then drops the record; C(files) are refused
        with it. Without a record it does nothing.
      - C(forget) drops the record (after the change proved good), once the units are handled.
      - Dropping a record is never reported as a change.
    type: str
    choices: [keep, fresh, restore, forget]
    default: keep
author: monstack
"""

RETURN = r"""
changed_items:
  description: What was (in check mode, would be) changed, in order, as "group NAME", "user NAME",
    a path, "package NAME", a file's dest (also a file put back), "unit NAME".
  type: list
  elements: str
  returned: always
changed_files:
  description: The dests of the files of C(files) changed.
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
cut_listeners:
  description: With C(listeners_open), the listeners the new state would cut off ({port, proto, address,
    pid, process}); the task failed and changed nothing when any is listed.
  type: list
  elements: dict
  returned: always
missing:
  description: The paths of C(requires) that are missing; when any is, C(files) and the units to enable,
    start or restart were left alone.
  type: list
  elements: str
  returned: always
restored:
  description: With C(previous=restore), the dests put back (in check mode, that would be) because they
    differed from their recorded state; their content is never returned.
  type: list
  elements: str
  returned: always
"""

import errno
import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
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

# Directories of the system, never the stack's: a `paths` directory entry naming one is refused
# unless it has create_only (made when missing, else left as it is), and previous_dir may not be one.
# This is the list the controller-side checks import too (a filter plugin reads this constant from
# this file), so it stays a plain top-level frozenset of string literals.
SYSTEM_DIRECTORIES = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
    "/usr", "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/local",
    "/usr/local/bin", "/usr/local/etc", "/usr/local/lib", "/usr/local/sbin", "/usr/local/share", "/usr/sbin",
    "/usr/share", "/usr/src",
    "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail",
    "/var/opt", "/var/run", "/var/spool", "/var/tmp",
    "/etc/systemd", "/etc/systemd/system", "/etc/default", "/etc/ssl", "/etc/ssl/private", "/etc/ssh",
})

# A directory opened on the way to a path: never through a symlink (the walk decides about those).
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# An existing file, read or given new attributes: never through a symlink, never blocking on a fifo.
EXISTING_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# As the kernel's limit on the symlinks followed in resolving one path.
MAX_LINKS = 40


class StateError(Exception):
    """Something that cannot be put right here: the task fails with this message."""


def _name_or_id(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return number


def _own_ids():
    """The owner and group of what the module makes for itself (parents, previous_dir): root:root
    when run as root, as on the hosts; the running user's own when not (the unit tests)."""
    return (0, 0) if os.geteuid() == 0 else (os.geteuid(), os.getegid())


def check_absolute(path, what):
    """Refuse a path that is not absolute and normalised: the walks below take it as it is written."""
    if (not isinstance(path, str) or not path.startswith("/") or path.startswith("//")
            or os.path.normpath(path) != path):
        raise StateError(f"{what}: {path!r} is not an absolute, normalised path (no '.', '..', '//' or "
                         f"trailing '/')")


def _changer(info):
    """Who besides root (and the user the module runs as) can change the directory stat()ed as
    `info`, or None when no one can."""
    if info.st_uid not in (0, os.geteuid()):
        return _name_or_id(pwd.getpwuid, info.st_uid)
    if info.st_mode & 0o020:
        return f"the group {_name_or_id(grp.getgrgid, info.st_gid)}"
    if info.st_mode & 0o002:
        return "every user"
    return None


def _open_directory(path, make_missing=False, origin=None):
    """A file descriptor of the directory `path`, opened component by component from / without ever
    following a symlink blindly: a link on the way is followed only when the directory holding it is
    root's and writable by no one else (/lib -> usr/lib, /var/run -> /run), else StateError, as a
    daemon's user could plant one in its own directory to make root change /etc. With make_missing,
    missing directories are made root:root 0755; else a missing one raises FileNotFoundError (and a
    file on the way NotADirectoryError). `origin` is the path named in errors. The caller closes it."""
    origin = origin or path
    if not path.startswith("/"):
        raise StateError(f"{origin}: {path} is not an absolute path")
    descriptor = os.open("/", DIRECTORY_FLAGS)
    walked, pending, links = [], [part for part in path.split("/") if part], 0
    try:
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":  # only from a trusted link's target: the directory's real parent
                parent = os.open("..", DIRECTORY_FLAGS, dir_fd=descriptor)
                os.close(descriptor)
                descriptor, walked = parent, walked[:-1]
                continue
            here = "/" + "/".join(walked + [name])
            try:
                info = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
            except FileNotFoundError:
                if not make_missing:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), here) from None
                os.mkdir(name, 0o700, dir_fd=descriptor)
                info = None
            if info is not None and stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise StateError(f"{origin}: more than {MAX_LINKS} symbolic links on the way; refusing to "
                                     f"follow them")
                who = _changer(os.fstat(descriptor))
                if who is not None:
                    raise StateError(f"{origin}: {here} is a symbolic link in a directory that {who} can change; "
                                     f"refusing to follow it")
                target = os.readlink(name, dir_fd=descriptor)
                if target.startswith("/"):
                    root = os.open("/", DIRECTORY_FLAGS)
                    os.close(descriptor)
                    descriptor, walked = root, []
                pending[:0] = [part for part in target.split("/") if part]
                continue
            child = os.open(name, DIRECTORY_FLAGS, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = child
            walked.append(name)
            if info is None:  # made just now
                os.fchown(descriptor, *_own_ids())
                os.fchmod(descriptor, 0o755)
        return descriptor
    except BaseException:
        os.close(descriptor)
        raise


def _attributes(path, info):
    return {"path": path, "state": "directory" if stat.S_ISDIR(info.st_mode) else "file",
            "owner": _name_or_id(pwd.getpwuid, info.st_uid), "group": _name_or_id(grp.getgrgid, info.st_gid),
            "mode": "0%03o" % stat.S_IMODE(info.st_mode)}


def _describe(parent, name, path):
    """describe_path of `name` in the directory open as `parent`."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return {"path": path, "state": "absent"}
    if stat.S_ISLNK(info.st_mode):
        return {"path": path, "state": "link", "src": os.readlink(name, dir_fd=parent)}
    return _attributes(path, info)


def describe_path(path):
    """The state of a path as the module compares it: absent, link (src), directory or file (owner, group, mode)."""
    if path == "/":
        return _attributes(path, os.stat("/"))
    directory, name = os.path.split(path)
    try:
        parent = _open_directory(directory, origin=path)
    except FileNotFoundError:
        return {"path": path, "state": "absent"}
    try:
        return _describe(parent, name, path)
    finally:
        os.close(parent)


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
    """The entry's owner, group and mode on a path: only for the private copy that validate checks."""
    uid, gid = _ids(entry)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if entry.get("mode") is not None:
        os.chmod(path, _mode(entry["mode"]))


def _set_fd_attributes(descriptor, uid, gid, mode):
    """Owner, group (None: left as they are) and mode on what is open as `descriptor`, so that a swap
    of the name between the check and the change cannot redirect it."""
    if uid is not None or gid is not None:
        os.fchown(descriptor, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.fchmod(descriptor, mode)


def _refuse_hard_links(parent, info, path):
    """A file with other names, in a directory someone else can change, may be another's file (say
    /etc/shadow) linked there: its attributes are not changed in place."""
    if info.st_nlink > 1:
        who = _changer(os.fstat(parent))
        if who is not None:
            raise StateError(f"{path} has {info.st_nlink} hard links and is in a directory that {who} can change; "
                             f"refusing to change its attributes")


def _read_all(descriptor):
    chunks = []
    while True:
        chunk = os.read(descriptor, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _open_existing_file(parent, name, path):
    """(before, descriptor or None, stat or None, content) of the file `name` in `parent`: refused when
    it is anything but absent or a regular file. The caller closes the descriptor."""
    before = _describe(parent, name, path)
    if before["state"] not in ("absent", "file"):
        raise StateError(f"{path} exists as a {before['state']}, not a file")
    if before["state"] == "absent":
        return before, None, None, b""
    descriptor = os.open(name, EXISTING_FILE_FLAGS, dir_fd=parent)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path} exists, but not as a regular file")
        return _attributes(path, info), descriptor, info, _read_all(descriptor)
    except BaseException:
        os.close(descriptor)
        raise


def _write_file(parent, name, content, uid, gid, mode, sync=False):
    """`content` as the file `name` in the directory open as `parent`: written to a new file beside it
    (never through a link: O_EXCL and O_NOFOLLOW), given its owner, group and mode, then renamed over it."""
    temporary = f".{name}.{os.urandom(4).hex()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
    try:
        with os.fdopen(descriptor, "wb") as output:
            output.write(content)
            output.flush()
            _set_fd_attributes(output.fileno(), uid, gid, mode)
            if sync:
                os.fsync(output.fileno())
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=parent)
        except FileNotFoundError:
            pass
        raise


def _replace_link(parent, name, src):
    temporary = f"{name}.monstack-tmp"
    try:
        os.unlink(temporary, dir_fd=parent)
    except FileNotFoundError:
        pass
    os.symlink(src, temporary, dir_fd=parent)
    try:
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        os.unlink(temporary, dir_fd=parent)
        raise


def _make_or_fix_directory(parent, name, path, entry, before):
    """The directory `name` in `parent`, made when absent, with the entry's attributes: its state after."""
    uid, gid = _ids(entry)
    mode = _mode(entry.get("mode"))
    if before["state"] == "absent":
        # With a mode to set, made private first: never wider than asked, not even for a moment.
        os.mkdir(name, 0o777 if mode is None else 0o700, dir_fd=parent)
    descriptor = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
    try:
        _set_fd_attributes(descriptor, uid, gid, mode)
        return _attributes(path, os.fstat(descriptor))
    finally:
        os.close(descriptor)


def ensure_path(entry, check_mode):
    """A directory, a symlink, or no file, as the entry says: (changed, before, after)."""
    path, state = entry["path"], entry.get("state") or "directory"
    check_absolute(path, "paths")
    if state not in ("directory", "link", "absent"):
        raise StateError(f"{path}: state must be directory, link or absent, not {state}")
    create_only = _boolean(f"paths: create_only of {path}", entry.get("create_only", False))
    if state == "directory" and not create_only and path in SYSTEM_DIRECTORIES:
        raise StateError(f"{path} is a system directory, not the stack's: refusing to change it (create_only "
                         f"would only make it when missing)")
    if path == "/":
        if state == "directory":
            before = describe_path(path)
            return False, before, before
        raise StateError(f"{path} is a directory; refusing to remove or replace it")
    directory, name = os.path.split(path)
    try:
        parent = _open_directory(directory, origin=path)
    except FileNotFoundError:
        parent = None
    try:
        before = {"path": path, "state": "absent"} if parent is None else _describe(parent, name, path)
        if state == "absent":
            if before["state"] == "absent":
                return False, before, before
            if before["state"] == "directory":
                raise StateError(f"{path} is a directory; refusing to remove it")
            if not check_mode:
                os.unlink(name, dir_fd=parent)
            return True, before, {"path": path, "state": "absent"}
        if state == "link":
            src = entry["src"]
            if before["state"] == "link" and before["src"] == src:
                return False, before, before
            if before["state"] == "directory":
                raise StateError(f"{path} is a directory; refusing to replace it with a link to {src}")
            if not check_mode:
                if parent is None:
                    raise StateError(f"{path}: the directory {directory} does not exist")
                _replace_link(parent, name, src)
            return True, before, {"path": path, "state": "link", "src": src}
        if before["state"] not in ("absent", "directory"):
            raise StateError(f"{path} exists as a {before['state']}, not a directory")
        if create_only and before["state"] == "directory":
            return False, before, before
        after = _wanted_attributes(dict(before, state="directory"), entry)
        if before == after:
            return False, before, after
        if not check_mode:
            if parent is None:
                parent = _open_directory(directory, make_missing=True, origin=path)
            after = _make_or_fix_directory(parent, name, path, entry, before)
        return True, before, after
    finally:
        if parent is not None:
            os.close(parent)


def ensure_file(module, entry, check_mode, before_change=None):
    """A regular file with the content and attributes given: (changed, diff or None). Just before it
    changes (not in check mode), before_change(dest, stat or None when absent, content) is called."""
    dest, content = entry["dest"], (entry.get("content") or "").encode("utf-8")
    check_absolute(dest, "files")
    directory, name = os.path.split(dest)
    if not name:
        raise StateError(f"{dest} exists as a directory, not a file")
    try:
        parent = _open_directory(directory, origin=dest)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise StateError(f"{dest}: the directory {directory} does not exist") from error
    try:
        before, handle, info, old = _open_existing_file(parent, name, dest)
    except BaseException:
        os.close(parent)
        raise
    try:
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
        uid, gid = _ids(entry)
        mode = _mode(entry.get("mode"))
        if same_content:
            _refuse_hard_links(parent, info, dest)
            if before_change:
                before_change(dest, info, old)
            _set_fd_attributes(handle, uid, gid, mode)
            return True, diff
        if entry.get("validate"):
            validate(module, entry, content)
        if before_change:
            before_change(dest, info, old)
        # What is not given stays as the live file has it; a new file is made 0600 by the running user.
        if info is not None:
            uid = info.st_uid if uid is None else uid
            gid = info.st_gid if gid is None else gid
            mode = stat.S_IMODE(info.st_mode) if mode is None else mode
        _write_file(parent, name, content, uid, gid, 0o600 if mode is None else mode)
        return True, diff
    finally:
        if handle is not None:
            os.close(handle)
        os.close(parent)


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


class Previous:
    """The state of files before a change, kept in one directory (previous_dir) to put them back if
    the change fails: manifest.json lists, in the order recorded, {"dest", "state": "absent"} or
    {"dest", "state": "file", "copy" (a file beside the manifest holding the content), "uid", "gid",
    "owner", "group", "mode"}. Everything in it is root's, the copies 0600: root trusts the manifest
    to say what to write where, so a directory anyone else can change is refused."""

    MANIFEST = "manifest.json"

    def __init__(self, directory):
        self.directory = directory
        self._records = None

    def _open(self, create):
        """The directory, opened safely (made root:root 0700 with create), or None when missing."""
        parent_path, name = os.path.split(self.directory)
        try:
            parent = _open_directory(parent_path, make_missing=create, origin=self.directory)
        except FileNotFoundError:
            return None
        try:
            before = _describe(parent, name, self.directory)
            if before["state"] == "absent":
                if not create:
                    return None
                os.mkdir(name, 0o700, dir_fd=parent)
            elif before["state"] != "directory":
                raise StateError(f"previous_dir {self.directory} exists as a {before['state']}, not a directory; "
                                 f"refusing to use it")
            descriptor = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            if before["state"] == "absent":
                os.fchown(descriptor, *_own_ids())
                os.fchmod(descriptor, 0o700)
            who = _changer(os.fstat(descriptor))
            if who is not None:
                raise StateError(f"previous_dir {self.directory} is a directory that {who} can change; refusing "
                                 f"to trust what it holds")
            return descriptor
        except BaseException:
            os.close(descriptor)
            raise

    def records(self):
        """The records of the manifest ([] without one), read once per run and checked."""
        if self._records is not None:
            return self._records
        descriptor = self._open(create=False)
        if descriptor is None:
            self._records = []
            return self._records
        try:
            try:
                handle = os.open(self.MANIFEST, EXISTING_FILE_FLAGS, dir_fd=descriptor)
            except FileNotFoundError:
                self._records = []
                return self._records
            try:
                if not stat.S_ISREG(os.fstat(handle).st_mode):
                    raise StateError(f"{self.directory}/{self.MANIFEST} is not a regular file")
                manifest = json.loads(_read_all(handle).decode("utf-8"))
            finally:
                os.close(handle)
        except ValueError as error:
            raise StateError(f"{self.directory}/{self.MANIFEST} cannot be read: {error}") from error
        finally:
            os.close(descriptor)
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, list) or not all(self._valid(record) for record in files):
            raise StateError(f"{self.directory}/{self.MANIFEST} is not a manifest of monstack_state")
        self._records = files
        return self._records

    @staticmethod
    def _valid(record):
        if not isinstance(record, dict) or not isinstance(record.get("dest"), str):
            return False
        check_absolute(record["dest"], "previous_dir: a recorded dest")
        if record.get("state") == "absent":
            return True
        return (record.get("state") == "file" and re.fullmatch(r"copy-[0-9a-f]{32}", str(record.get("copy")))
                is not None and all(isinstance(record.get(key), int) for key in ("uid", "gid"))
                and re.fullmatch(r"0[0-7]{3,4}", str(record.get("mode"))) is not None)

    def record(self, dest, info, content):
        """Keep the state of dest (stat or None when absent, content) unless it is recorded already."""
        records = self.records()
        if any(record["dest"] == dest for record in records):
            return
        descriptor = self._open(create=True)
        try:
            if info is None:
                record = {"dest": dest, "state": "absent"}
            else:
                copy = "copy-" + hashlib.sha256(dest.encode("utf-8")).hexdigest()[:32]
                _write_file(descriptor, copy, content, *_own_ids(), 0o600, sync=True)
                record = dict(_attributes(dest, info), dest=dest, copy=copy, uid=info.st_uid, gid=info.st_gid)
                del record["path"]
            records.append(record)
            text = json.dumps({"version": 1, "files": records}, indent=1, sort_keys=True) + "\n"
            _write_file(descriptor, self.MANIFEST, text.encode("utf-8"), *_own_ids(), 0o600, sync=True)
        finally:
            os.close(descriptor)

    def forget(self):
        """Remove the manifest (first: without it the copies mean nothing), then the copies and any
        temporary file a killed run left."""
        self._records = []
        descriptor = self._open(create=False)
        if descriptor is None:
            return
        try:
            names = os.listdir(descriptor)
            for name in sorted(names, key=lambda name: name != self.MANIFEST):
                if name == self.MANIFEST or re.match(r"\.?(copy-[0-9a-f]{32}|manifest\.json)(\.|$)", name):
                    try:
                        os.unlink(name, dir_fd=descriptor)
                    except FileNotFoundError:
                        pass
        finally:
            os.close(descriptor)

    def _read_copy(self, record):
        descriptor = self._open(create=False)
        if descriptor is None:
            raise StateError(f"previous_dir {self.directory} is gone")
        try:
            handle = os.open(record["copy"], EXISTING_FILE_FLAGS, dir_fd=descriptor)
        except FileNotFoundError as error:
            raise StateError(f"{record['dest']}: its saved copy {self.directory}/{record['copy']} is missing"
                             ) from error
        finally:
            os.close(descriptor)
        try:
            return _read_all(handle)
        finally:
            os.close(handle)

    def restore(self, check_mode):
        """Put every recorded file back as it was: [(dest, diff)] of those that differed. The diff shows
        states, never content (a secret's copy is on disk, not in the arguments the output masks).
        The record is removed once all are back (not in check mode)."""
        restored = []
        for record in self.records():
            dest = record["dest"]
            directory, name = os.path.split(dest)
            try:
                parent = _open_directory(directory, origin=dest)
            except (FileNotFoundError, NotADirectoryError) as error:
                if record["state"] == "absent":
                    continue
                raise StateError(f"{dest}: the directory {directory} does not exist; cannot put back its "
                                 f"previous version") from error
            try:
                changed = self._restore_one(record, parent, name, check_mode)
            finally:
                os.close(parent)
            if changed:
                restored.append((dest, {"before_header": dest, "after_header": dest,
                                        "before": changed[0], "after": changed[1]}))
        if not check_mode:
            self.forget()
        return restored

    def _restore_one(self, record, parent, name, check_mode):
        """(before, after) when the file was (would be) put back, else None."""
        dest = record["dest"]
        if record["state"] == "absent":
            before = _describe(parent, name, dest)
            if before["state"] == "absent":
                return None
            if before["state"] == "directory":
                raise StateError(f"{dest} was absent before the change and is now a directory; refusing to "
                                 f"remove it")
            if not check_mode:
                os.unlink(name, dir_fd=parent)
            return before, {"path": dest, "state": "absent"}
        content = self._read_copy(record)
        uid, gid, mode = record["uid"], record["gid"], int(record["mode"], 8)
        before, handle, info, old = _open_existing_file(parent, name, dest)
        try:
            after = {"path": dest, "state": "file", "owner": _name_or_id(pwd.getpwuid, uid),
                     "group": _name_or_id(grp.getgrgid, gid), "mode": record["mode"]}
            same_content = info is not None and old == content
            if same_content and (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, mode):
                return None
            if not check_mode:
                if same_content:
                    _refuse_hard_links(parent, info, dest)
                    _set_fd_attributes(handle, uid, gid, mode)
                else:
                    _write_file(parent, name, content, uid, gid, mode)
            return before, after
        finally:
            if handle is not None:
                os.close(handle)


# /proc/net tables: TCP_LISTEN and, for UDP, an unconnected socket (TCP_CLOSE, remote port 0).
_LISTENING = {"tcp": "0A", "udp": "07"}


def _proc_address(text):
    """An address of /proc/net/{tcp,udp}[6] (hex, each 32-bit word in host order) as text."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[index:index + 4][::-1] for index in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def _loopback(address):
    return address.startswith("127.") or address in ("::1", "localhost") or address.startswith("::ffff:127.")


def _socket_owners():
    """{socket inode: (pid, process name)} of every process, from /proc/<pid>/fd."""
    owners = {}
    for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            with open(f"/proc/{pid}/comm") as handle:
                name = handle.read().strip()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners.setdefault(target[8:-1], (int(pid), name))
        except OSError:
            continue  # a process that ended, or one this run may not read
    return owners


def listening_sockets(proc_net="/proc/net"):
    """[{port, proto, address, inode}] of the host's listening TCP and bound UDP sockets, loopback left out."""
    found = []
    for proto, suffix in (("tcp", ""), ("tcp", "6"), ("udp", ""), ("udp", "6")):
        try:
            with open(f"{proc_net}/{proto}{suffix}") as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 on this host
        for row in rows:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state != _LISTENING[proto] or (proto == "udp" and not remote.endswith(":0000")):
                continue
            address, port = local.rsplit(":", 1)
            address = _proc_address(address)
            if not _loopback(address):
                found.append({"port": int(port, 16), "proto": proto, "address": address, "inode": inode})
    return found


def cut_listeners(open_ports, closed_ports, sockets=None, owners=None):
    """The listeners no port of open_ports or closed_ports ("PORT/proto") covers, each once per port."""
    kept = {str(port).lower() for port in list(open_ports) + list(closed_ports)}
    sockets = listening_sockets() if sockets is None else sockets
    owners = _socket_owners() if owners is None else owners
    cut, seen = [], set()
    for sock in sorted(sockets, key=lambda item: (item["proto"], item["port"], item["address"])):
        key = f"{sock['port']}/{sock['proto']}"
        if key in kept or key in seen:
            continue
        seen.add(key)
        pid, process = owners.get(sock["inode"], (0, "unknown"))
        cut.append({"port": sock["port"], "proto": sock["proto"], "address": sock["address"], "pid": pid,
                    "process": process})
    return cut


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
    """Enable and start (or stop) the units that are not already, restart those to restart: the list of
    what changed."""
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
        if unit.get("state") == "restarted":  # always: the caller knows its files changed (or were put back)
            actions.append("restart")
        if actions:
            changed.append(f"unit {name}")
            for action in actions if not check_mode else []:
                if action == "restart":
                    # A unit that failed over and over (a rollback's case) hit its start limit: forgive it.
                    module.run_command(["systemctl", "reset-failed", "--", name])
                _systemctl(module, action, name)
    return changed


def run(module, result):
    params, check_mode = module.params, module.check_mode
    result.setdefault("restored", [])
    check_paths(params)
    previous_mode = params.get("previous") or "keep"
    previous = Previous(params["previous_dir"]) if params.get("previous_dir") else None

    def note(item, diff=None):
        result["changed_items"].append(item)
        if diff:
            result["diff"].append(diff)

    # Before anything changes: a firewall about to load must not cut a service nobody named.
    if params.get("listeners_open"):
        result["cut_listeners"] = cut_listeners(params["listeners_open"], params.get("listeners_closed") or [])
        if result["cut_listeners"]:
            raise StateError("the new state would cut off listeners nobody named: " + ", ".join(
                f"{item['port']}/{item['proto']} ({item['process']}, pid {item['pid']}, on {item['address']})"
                for item in result["cut_listeners"]) + ". Nothing was changed.")

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
    # start wait for the caller's next run of the module; stopping a unit, and putting back the previous
    # versions of files (a rollback), never wait.
    ready = not result["missing"]
    if previous and previous_mode == "fresh" and not check_mode:
        previous.forget()  # an earlier play's leftover: not a change
    if previous and previous_mode == "restore":
        # A unit new in the play goes as it came: stopped and disabled before its file is removed.
        for record in previous.records() if not check_mode else []:
            if record["state"] == "absent" and record["dest"].startswith(SYSTEMD_DIRS) \
                    and os.path.lexists(record["dest"]):
                module.run_command(["systemctl", "disable", "--now", "--", os.path.basename(record["dest"])])
        for dest, diff in previous.restore(check_mode):
            result["restored"].append(dest)
            note(dest, diff)
    record = previous.record if previous and previous_mode in ("keep", "fresh") else None
    for entry in params["files"] if ready else []:
        changed, diff = ensure_file(module, entry, check_mode, before_change=record)
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
    if previous and previous_mode == "forget" and not check_mode:
        previous.forget()  # the change proved good (its units are handled): not a change


def check_paths(params):
    """Refuse, before anything changes, a path or dest that is not absolute and normalised, and a
    system directory that a directory entry without create_only would change."""
    for entry in params["paths"]:
        check_absolute(entry.get("path"), "paths")
        if ((entry.get("state") or "directory") == "directory" and entry["path"] in SYSTEM_DIRECTORIES
                and not _boolean(f"paths: create_only of {entry['path']}", entry.get("create_only", False))):
            raise StateError(f"{entry['path']} is a system directory, not the stack's: refusing to change it "
                             f"(create_only would only make it when missing)")
    for entry in params["files"]:
        check_absolute(entry.get("dest"), "files")


# The arguments: each a list of these elements; a file entry's keys (dest required).
ARGUMENT_LISTS = {"groups": str, "users": dict, "paths": dict, "packages": str, "files": dict, "units": dict,
                  "listeners_open": str, "listeners_closed": str,
                  "requires": str}
# The other arguments: each a string, with its default.
ARGUMENT_STRINGS = {"previous_dir": "", "previous": "keep"}
PREVIOUS_CHOICES = ("keep", "fresh", "restore", "forget")
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
    supported = list(ARGUMENT_LISTS) + list(ARGUMENT_STRINGS)
    unknown = sorted(name for name in given if name not in supported and not name.startswith("_ansible_"))
    if unknown:
        raise StateError(f"Unsupported parameters for monstack_state: {', '.join(unknown)}; "
                         f"supported: {', '.join(supported)}")
    params = {}
    for name, default in ARGUMENT_STRINGS.items():
        value = given.get(name)
        if value is not None and not isinstance(value, str):
            raise StateError(f"{name} must be a string, not {type(value).__name__}")
        params[name] = value or default
    if params["previous"] not in PREVIOUS_CHOICES:
        raise StateError(f"previous must be one of {', '.join(PREVIOUS_CHOICES)}, not {params['previous']!r}")
    if params["previous_dir"]:
        check_absolute(params["previous_dir"], "previous_dir")
        if params["previous_dir"] in SYSTEM_DIRECTORIES:
            raise StateError(f"previous_dir: {params['previous_dir']} is a system directory, not the stack's")
    elif params["previous"] != "keep":
        raise StateError(f"previous: {params['previous']} needs previous_dir, the directory that holds the "
                         f"previous versions")
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
    if files and params["previous"] == "restore":
        raise StateError("files cannot be given with previous: restore, which puts back the files recorded in "
                         "previous_dir")
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
    given.update({name: params.get(name) for name in ("groups", "packages", "requires", "previous_dir",
                                                      "previous")})
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
              "missing": [], "restored": [], "cut_listeners": [], "diff": []}
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
