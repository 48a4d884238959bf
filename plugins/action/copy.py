"""`ansible.legacy.copy` with a short way out for a file that is already right.

ansible.builtin.template hands its rendered file to `ansible.legacy.copy`, a name Ansible resolves
through the configured action plugins first, for local overrides like this one (ansible.cfg:
action_plugins); tasks naming ansible.builtin.copy keep the builtin. For a file already in place the
builtin copy action stats it and then runs the file module anyway, to set attributes that already
hold. Here the stat decides: when the checksum, owner, group and mode asked for already hold, the
result is "ok" without the second module run (and without the temporary directory the copy step
would otherwise make for itself). Anything else - a difference, a link, a directory, an attribute
the stat cannot confirm (SELinux, chattr, symbolic modes) - goes the builtin way unchanged, so
validation, diff, check mode and backups behave exactly as before.
"""

from __future__ import annotations

import re

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.loader import action_loader
from ansible.utils.hashing import checksum

# Arguments whose effect a stat cannot confirm: with any of them set, the builtin path decides.
_UNCHECKED = ("seuser", "serole", "setype", "selevel", "attributes", "directory_mode", "local_follow")
_OCTAL = re.compile(r"^0?[0-7]{3,4}$")
# By class, through the loader: this file takes the builtin's module name when Ansible loads it.
BuiltinCopy = action_loader.get("ansible.builtin.copy", class_only=True)


def wanted_mode(mode):
    """'0644', '644' or 420 -> '0644'; None -> None (leave as is); anything else -> False (cannot tell)."""
    if mode is None:
        return None
    if isinstance(mode, int) and not isinstance(mode, bool):
        return "0%03o" % mode
    if isinstance(mode, str) and _OCTAL.match(mode):
        return "0%03o" % int(mode, 8)
    return False


def attributes_hold(args: dict, stat: dict) -> bool:
    """Whether a file's stat already has the owner, group and mode the task asks for."""
    if any(args.get(name) is not None for name in _UNCHECKED):
        return False
    mode = wanted_mode(args.get("mode"))
    if mode is False or (mode is not None and stat.get("mode") != mode):
        return False
    for name, by_name, by_id in (("owner", "pw_name", "uid"), ("group", "gr_name", "gid")):
        value = args.get(name)
        if value is None:
            continue
        value = str(value)
        if value != (str(stat.get(by_id)) if value.isdigit() else stat.get(by_name)):
            return False
    return True


class ActionModule(BuiltinCopy):
    # The temporary directory is made only when a file is really transferred (see _copy_file).
    TRANSFERS_FILES = False

    def _copy_file(self, source_full, source_rel, content, content_tempfile, dest, task_vars, follow):
        shell = self._connection._shell
        args = self._task.args
        if (boolean(args.get("force", True), strict=False) and not boolean(args.get("raw", False), strict=False)
                and not shell.path_has_trailing_slash(dest)):
            real_source = self._loader.get_real_file(source_full, decrypt=boolean(args.get("decrypt", True), strict=False))
            stat = self._execute_remote_stat(dest, all_vars=task_vars, follow=follow, checksum=True)
            if (stat.get("exists") and stat.get("isreg") and not stat.get("islnk")
                    and stat.get("checksum") == checksum(real_source) and attributes_hold(args, stat)):
                self._remove_tempfile_if_content_defined(content, content_tempfile)
                self._loader.cleanup_tmp_file(real_source)
                return {"changed": False, "dest": dest, "path": dest, "checksum": stat["checksum"], "state": "file",
                        "mode": stat.get("mode"), "owner": stat.get("pw_name"), "group": stat.get("gr_name"),
                        "uid": stat.get("uid"), "gid": stat.get("gid"), "size": stat.get("size")}
            if real_source != source_full:
                self._loader.cleanup_tmp_file(real_source)
        if shell.tmpdir is None and not self._task.check_mode:
            self._make_tmp_path()
        return super()._copy_file(source_full, source_rel, content, content_tempfile, dest, task_vars, follow)
