"""plugins/modules/monstack_state.py's functions, run directly on a temporary directory.

Most of this needs no root: owners and groups are the current user's or left unset, and systemctl is a
fake that records what it was asked to run. The tests of symlinks planted in a directory another user
owns, and of putting back another user's file, make such files, so they run as root only (as in CI)
and are skipped otherwise. The host's own system directories are only ever used in check mode.
"""

from __future__ import annotations

import ast
import grp
import json
import os
import pwd
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, load_module

state = load_module("plugins/modules/monstack_state.py", "monstack_state_module")

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


class RunningModule:
    """Stands in for the module's Host where ensure_file runs a validate command: runs it for real."""

    def __init__(self):
        self.commands = []

    def run_command(self, args, check_rc=False):
        self.commands.append(list(args))
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


class FakeSystemctl:
    """Stands in for the module's Host where units are handled: answers `systemctl show` with the text given,
    anything else with success, and records every command."""

    def __init__(self, show="", rc=0, failing=()):
        self.show, self.rc, self.failing = show, rc, set(failing)
        self.commands = []

    def run_command(self, args, check_rc=False):
        self.commands.append(list(args))
        if args[:2] == ["systemctl", "show"]:
            return self.rc, self.show, "" if self.rc == 0 else "boom"
        if args[1] in self.failing:
            return 1, "", f"{args[1]} failed"
        return 0, "", ""


def mode_of(path):
    return os.lstat(path).st_mode & 0o7777


def show_block(load="loaded", active="active", unit_file="enabled"):
    return f"LoadState={load}\nActiveState={active}\nUnitFileState={unit_file}\n"


# --- _mode ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0640", "640", 0o640])
def test_mode_reads_octal_strings_and_integers_alike(value):
    assert state._mode(value) == 0o640


def test_mode_leaves_an_unset_mode_unset():
    assert state._mode(None) is None


# --- ensure_path ---------------------------------------------------------------------------------------

def test_ensure_path_makes_a_directory_with_its_mode_then_finds_it_unchanged(tmp_path):
    entry = {"path": str(tmp_path / "etc" / "daemon"), "mode": "0750", "owner": ME, "group": MY_GROUP}
    changed, before, after = state.ensure_path(entry, check_mode=False)
    assert changed and before["state"] == "absent"
    assert after["state"] == "directory" and after["mode"] == "0750"
    assert (tmp_path / "etc" / "daemon").is_dir() and mode_of(tmp_path / "etc" / "daemon") == 0o750
    changed, before, after = state.ensure_path(entry, check_mode=False)
    assert not changed and before == after


def test_ensure_path_fixes_the_mode_of_an_existing_directory(tmp_path):
    (tmp_path / "dir").mkdir()
    os.chmod(tmp_path / "dir", 0o755)
    changed, before, after = state.ensure_path({"path": str(tmp_path / "dir"), "mode": "0700"}, check_mode=False)
    assert changed and before["mode"] == "0755" and after["mode"] == "0700"
    assert mode_of(tmp_path / "dir") == 0o700


def test_ensure_path_replaces_a_file_with_a_link_once(tmp_path):
    unit = tmp_path / "unit.service"
    unit.write_text("[Unit]\n")
    entry = {"path": str(unit), "state": "link", "src": "/dev/null"}
    changed, before, after = state.ensure_path(entry, check_mode=False)
    assert changed and before["state"] == "file" and after == {"path": str(unit), "state": "link", "src": "/dev/null"}
    assert os.path.islink(unit) and os.readlink(unit) == "/dev/null"
    assert sorted(os.listdir(tmp_path)) == ["unit.service"]  # no temporary link left beside it
    assert state.ensure_path(entry, check_mode=False)[0] is False


def test_ensure_path_repoints_a_link_that_points_elsewhere(tmp_path):
    link = tmp_path / "current"
    os.symlink("/old", link)
    assert state.ensure_path({"path": str(link), "state": "link", "src": "/new"}, check_mode=False)[0]
    assert os.readlink(link) == "/new"


def test_ensure_path_refuses_a_file_where_a_directory_belongs(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(state.StateError, match="not a directory"):
        state.ensure_path({"path": str(tmp_path / "taken")}, check_mode=False)
    assert (tmp_path / "taken").read_text() == "x"


def test_ensure_path_refuses_to_replace_a_directory_with_a_link(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(state.StateError, match="is a directory"):
        state.ensure_path({"path": str(tmp_path / "dir"), "state": "link", "src": "/dev/null"}, check_mode=False)
    assert (tmp_path / "dir").is_dir() and not os.path.islink(tmp_path / "dir")


def test_ensure_path_changes_nothing_in_check_mode(tmp_path):
    changed, before, after = state.ensure_path({"path": str(tmp_path / "new"), "mode": "0700"}, check_mode=True)
    assert changed and before["state"] == "absent" and after["state"] == "directory" and after["mode"] == "0700"
    assert not (tmp_path / "new").exists()

    (tmp_path / "dir").mkdir()
    os.chmod(tmp_path / "dir", 0o755)
    assert state.ensure_path({"path": str(tmp_path / "dir"), "mode": "0700"}, check_mode=True)[0]
    assert mode_of(tmp_path / "dir") == 0o755

    (tmp_path / "unit.service").write_text("[Unit]\n")
    assert state.ensure_path({"path": str(tmp_path / "unit.service"), "state": "link", "src": "/dev/null"},
                             check_mode=True)[0]
    assert not os.path.islink(tmp_path / "unit.service")
    assert sorted(os.listdir(tmp_path)) == ["dir", "unit.service"]


def test_ensure_path_removes_a_file_and_a_link_then_finds_them_gone(tmp_path):
    (tmp_path / "ruleset.nft").write_text("table inet monstack {}\n")
    os.symlink("/dev/null", tmp_path / "masked.service")
    for name, was in (("ruleset.nft", "file"), ("masked.service", "link")):
        entry = {"path": str(tmp_path / name), "state": "absent"}
        changed, before, after = state.ensure_path(entry, check_mode=False)
        assert changed and before["state"] == was and after == {"path": entry["path"], "state": "absent"}
        assert not os.path.lexists(tmp_path / name)
        assert state.ensure_path(entry, check_mode=False)[0] is False
    os.symlink("/nonexistent", tmp_path / "dangling")
    assert state.ensure_path({"path": str(tmp_path / "dangling"), "state": "absent"}, check_mode=False)[0]
    assert os.listdir(tmp_path) == []


def test_ensure_path_removes_nothing_in_check_mode_and_refuses_a_directory(tmp_path):
    (tmp_path / "ruleset.nft").write_text("x")
    assert state.ensure_path({"path": str(tmp_path / "ruleset.nft"), "state": "absent"}, check_mode=True)[0]
    assert (tmp_path / "ruleset.nft").read_text() == "x"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "kept").write_text("y")
    with pytest.raises(state.StateError, match="refusing to remove it"):
        state.ensure_path({"path": str(tmp_path / "dir"), "state": "absent"}, check_mode=False)
    assert (tmp_path / "dir" / "kept").read_text() == "y"


# --- ensure_file ---------------------------------------------------------------------------------------

def test_ensure_file_writes_a_new_file_with_its_mode_then_finds_it_unchanged(tmp_path):
    dest = tmp_path / "daemon.yml"
    entry = {"dest": str(dest), "content": "listen: 9100\n", "mode": "0640", "owner": ME, "group": MY_GROUP}
    changed, diff = state.ensure_file(RunningModule(), entry, check_mode=False)
    assert changed and diff["before"] == "" and diff["after"] == "listen: 9100\n"
    assert dest.read_text() == "listen: 9100\n" and mode_of(dest) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["daemon.yml"]
    assert state.ensure_file(RunningModule(), entry, check_mode=False) == (False, None)


def test_ensure_file_shows_a_content_change_as_text(tmp_path):
    dest = tmp_path / "daemon.yml"
    dest.write_text("listen: 9100\n")
    changed, diff = state.ensure_file(RunningModule(), {"dest": str(dest), "content": "listen: 9200\n"},
                                      check_mode=False)
    assert changed
    assert (diff["before"], diff["after"]) == ("listen: 9100\n", "listen: 9200\n")
    assert diff["before_header"] == diff["after_header"] == str(dest)
    assert dest.read_text() == "listen: 9200\n"


def test_ensure_file_fixes_only_the_mode_when_the_content_holds(tmp_path):
    dest = tmp_path / "daemon.yml"
    dest.write_text("same\n")
    os.chmod(dest, 0o644)
    changed, diff = state.ensure_file(RunningModule(), {"dest": str(dest), "content": "same\n", "mode": "0600"},
                                      check_mode=False)
    assert changed and diff["before"]["mode"] == "0644" and diff["after"]["mode"] == "0600"
    assert mode_of(dest) == 0o600 and dest.read_text() == "same\n"


def test_a_secret_file_never_shows_its_content(tmp_path):
    dest = tmp_path / "password"
    changed, diff = state.ensure_file(RunningModule(), {"dest": str(dest), "content": "s3cret-one\n", "mode": "0600",
                                                        "secret": True}, check_mode=False)
    assert changed and "s3cret" not in repr(diff)
    assert dest.read_text() == "s3cret-one\n"
    changed, diff = state.ensure_file(RunningModule(), {"dest": str(dest), "content": "s3cret-two\n", "secret": True},
                                      check_mode=False)
    assert changed and "s3cret" not in repr(diff)
    assert dest.read_text() == "s3cret-two\n"


def test_a_refused_secret_file_hides_what_its_check_said(tmp_path):
    dest = tmp_path / "alertmanager.yml"
    with pytest.raises(state.StateError, match="output is hidden") as refused:
        state.ensure_file(RunningModule(), {"dest": str(dest), "content": "token: s3cret\n", "secret": True,
                                            "validate": "sh -c 'cat \"$1\"; exit 1' check %s"}, check_mode=False)
    assert "s3cret" not in str(refused.value)
    assert not dest.exists()


def test_ensure_file_writes_nothing_in_check_mode(tmp_path):
    new, old = tmp_path / "new.yml", tmp_path / "old.yml"
    old.write_text("old\n")
    os.chmod(old, 0o644)
    module = RunningModule()
    changed, diff = state.ensure_file(module, {"dest": str(new), "content": "x\n"}, check_mode=True)
    assert changed and diff["after"] == "x\n"
    changed, diff = state.ensure_file(module, {"dest": str(old), "content": "new\n", "mode": "0600",
                                               "validate": "false %s"}, check_mode=True)
    assert changed and (diff["before"], diff["after"]) == ("old\n", "new\n")
    assert not new.exists() and old.read_text() == "old\n" and mode_of(old) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["old.yml"]
    assert module.commands == []  # check mode validates nothing


@pytest.mark.parametrize("validate", ["false %s", "sh -c 'exit 1' x %s"])
def test_a_refused_file_leaves_the_live_one_and_no_temporary_file(tmp_path, validate):
    dest = tmp_path / "daemon.yml"
    dest.write_text("old\n")
    with pytest.raises(state.StateError, match="failed to validate"):
        state.ensure_file(RunningModule(), {"dest": str(dest), "content": "broken\n", "validate": validate},
                          check_mode=False)
    assert dest.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["daemon.yml"]


def test_an_accepted_file_replaces_the_live_one(tmp_path):
    dest = tmp_path / "daemon.yml"
    dest.write_text("old\n")
    module = RunningModule()
    assert state.ensure_file(module, {"dest": str(dest), "content": "new\n", "validate": "test -f %s"},
                             check_mode=False)[0]
    assert dest.read_text() == "new\n"
    assert sorted(os.listdir(tmp_path)) == ["daemon.yml"]
    [command] = module.commands
    # The new file, in a private directory away from the live one (gone afterwards), under the same name.
    assert command[:2] == ["test", "-f"] and os.path.dirname(command[2]) != str(tmp_path)
    assert os.path.basename(command[2]) == "daemon.yml" and not os.path.exists(command[2])


def test_validate_reads_the_new_content(tmp_path):
    dest = tmp_path / "daemon.yml"
    dest.write_text("old\n")
    assert state.ensure_file(RunningModule(), {"dest": str(dest), "content": "new\n", "validate": "grep -qx new %s"},
                             check_mode=False)[0]
    assert dest.read_text() == "new\n"
    with pytest.raises(state.StateError):
        state.ensure_file(RunningModule(), {"dest": str(dest), "content": "newer\n", "validate": "grep -qx new %s"},
                          check_mode=False)
    assert dest.read_text() == "new\n"


def test_a_validate_without_the_file_is_refused(tmp_path):
    dest = tmp_path / "daemon.yml"
    dest.write_text("old\n")
    module = RunningModule()
    with pytest.raises(state.StateError, match="must contain %s"):
        state.ensure_file(module, {"dest": str(dest), "content": "new\n", "validate": "true"}, check_mode=False)
    assert dest.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["daemon.yml"]
    assert module.commands == []


def test_ensure_file_refuses_a_missing_directory(tmp_path):
    with pytest.raises(state.StateError, match="does not exist"):
        state.ensure_file(RunningModule(), {"dest": str(tmp_path / "missing" / "daemon.yml"), "content": "x\n"},
                          check_mode=False)
    assert not (tmp_path / "missing").exists()


def test_ensure_file_refuses_a_directory_where_the_file_belongs(tmp_path):
    (tmp_path / "daemon.yml").mkdir()
    with pytest.raises(state.StateError, match="not a file"):
        state.ensure_file(RunningModule(), {"dest": str(tmp_path / "daemon.yml"), "content": "x\n"}, check_mode=False)


# --- units ---------------------------------------------------------------------------------------------

def test_unit_states_reads_one_systemctl_show_for_all_units():
    fake = FakeSystemctl(show_block() + "\n" + show_block(active="inactive", unit_file="disabled"))
    assert state.unit_states(fake, ["a.service", "b.timer"]) == {
        "a.service": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled"},
        "b.timer": {"LoadState": "loaded", "ActiveState": "inactive", "UnitFileState": "disabled"},
    }
    [command] = fake.commands
    assert command[:2] == ["systemctl", "show"] and command[-2:] == ["a.service", "b.timer"]


def test_unit_states_asks_nothing_for_no_units():
    fake = FakeSystemctl()
    assert state.unit_states(fake, []) == {}
    assert fake.commands == []


def test_unit_states_fails_on_a_short_or_failed_answer():
    with pytest.raises(state.StateError, match="1 of 2"):
        state.unit_states(FakeSystemctl(show_block()), ["a.service", "b.timer"])
    with pytest.raises(state.StateError, match="failed"):
        state.unit_states(FakeSystemctl(show_block(), rc=1), ["a.service"])


def test_units_whose_files_are_new_count_as_changed_in_check_mode():
    fake = FakeSystemctl(show_block(load="not-found", active="inactive", unit_file="")
                         + "\n" + show_block(load="not-found", active="inactive", unit_file=""))
    units = [{"name": "monstack-backup@prometheus.timer", "enabled": True, "state": "started"},
             {"name": "prometheus.service", "enabled": True, "state": "started"}]
    new_files = ["/etc/systemd/system/monstack-backup@.timer", "/etc/systemd/system/prometheus.service"]
    assert state.ensure_units(fake, units, new_files, check_mode=True) == [
        "unit monstack-backup@prometheus.timer", "unit prometheus.service"]
    assert [command[1] for command in fake.commands] == ["show"]


def test_a_missing_unit_whose_file_is_not_new_fails():
    units = [{"name": "monstack-backup@prometheus.timer", "enabled": True}]
    fake = FakeSystemctl(show_block(load="not-found", active="inactive", unit_file=""))
    with pytest.raises(state.StateError, match="does not exist"):
        state.ensure_units(fake, units, ["/etc/systemd/system/other@.timer"], check_mode=True)
    with pytest.raises(state.StateError, match="does not exist"):
        state.ensure_units(fake, units, ["/etc/systemd/system/monstack-backup@.timer"], check_mode=False)


def test_ensure_units_enables_and_starts_only_what_is_not_already():
    fake = FakeSystemctl("\n".join([
        show_block(),                                          # enabled and running: nothing
        show_block(active="inactive", unit_file="disabled"),   # enable and start
        show_block(active="failed", unit_file="enabled"),      # start only
        show_block(active="inactive", unit_file="static"),     # static: start only
        show_block(active="active", unit_file="disabled"),     # enable only
        show_block(active="inactive", unit_file="disabled"),   # neither asked for
    ]))
    units = [{"name": "a.service", "enabled": True, "state": "started"},
             {"name": "b.service", "enabled": True, "state": "started"},
             {"name": "c.service", "enabled": True, "state": "started"},
             {"name": "d.service", "enabled": True, "state": "started"},
             {"name": "e.timer", "enabled": True},
             {"name": "f.service"}]
    changed = state.ensure_units(fake, units, [], check_mode=False)
    assert changed == ["unit b.service", "unit c.service", "unit d.service", "unit e.timer"]
    assert fake.commands[1:] == [["systemctl", "enable", "--", "b.service"], ["systemctl", "start", "--", "b.service"],
                                 ["systemctl", "start", "--", "c.service"], ["systemctl", "start", "--", "d.service"],
                                 ["systemctl", "enable", "--", "e.timer"]]


def test_ensure_units_runs_nothing_in_check_mode():
    fake = FakeSystemctl(show_block(active="inactive", unit_file="disabled"))
    assert state.ensure_units(fake, [{"name": "b.service", "enabled": True, "state": "started"}], [],
                              check_mode=True) == ["unit b.service"]
    assert [command[1] for command in fake.commands] == ["show"]


def test_a_failed_start_fails_the_units():
    fake = FakeSystemctl(show_block(active="inactive", unit_file="enabled"), failing=["start"])
    with pytest.raises(state.StateError, match="systemctl start b.service failed"):
        state.ensure_units(fake, [{"name": "b.service", "state": "started"}], [], check_mode=False)


# --- run: requires --------------------------------------------------------------------------------------


def _params(tmp_path, binary):
    return {"groups": [], "users": [], "packages": [],
            "paths": [{"path": str(tmp_path / "etc"), "state": "directory", "mode": "0750"}],
            "files": [{"dest": str(tmp_path / "etc" / "daemon.yml"), "content": "x: 1\n", "secret": False,
                       "on_change": "reload"}],
            "units": [{"name": "old.service", "state": "stopped"},
                      {"name": "daemon.service", "enabled": True, "state": "started"}],
            "requires": [str(binary)]}


def _result():
    return {"changed_items": [], "changed_files": [], "changed_paths": [], "changed_packages": [], "on_change": [],
            "missing": [], "restored": [], "cut_listeners": [], "diff": []}


def test_a_missing_requirement_leaves_the_files_and_the_units_to_start_for_later(tmp_path):
    module = FakeSystemctl(show=show_block(active="active"))
    module.params, module.check_mode = _params(tmp_path, tmp_path / "bin" / "daemon"), False
    result = _result()
    state.run(module, result)
    assert result["missing"] == [str(tmp_path / "bin" / "daemon")]
    assert result["changed_paths"] == [str(tmp_path / "etc")], "the account part still runs"
    assert not (tmp_path / "etc" / "daemon.yml").exists() and result["on_change"] == []
    # Only the masked unit is looked at, and stopped: the daemon is not started without its binary.
    assert module.commands == [["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState", "--",
                                "old.service"], ["systemctl", "stop", "--", "old.service"]]


def test_with_its_requirement_there_the_same_run_writes_the_files_and_starts_the_unit(tmp_path):
    (tmp_path / "daemon").write_text("")
    module = FakeSystemctl(show=show_block(active="inactive", unit_file="masked") + "\n"
                           + show_block(active="inactive", unit_file="disabled"))
    module.params, module.check_mode = _params(tmp_path, tmp_path / "daemon"), False
    result = _result()
    state.run(module, result)
    assert result["missing"] == [] and (tmp_path / "etc" / "daemon.yml").read_text() == "x: 1\n"
    assert result["on_change"] == ["reload"]
    assert ["systemctl", "enable", "--", "daemon.service"] in module.commands
    assert ["systemctl", "start", "--", "daemon.service"] in module.commands
    assert ["systemctl", "stop", "--", "old.service"] not in module.commands


def test_the_line_logged_on_the_host_names_the_files_but_never_their_content():
    params = {"files": [{"dest": "/etc/x/password", "content": "s3cret\n", "secret": True},
                        {"dest": "/etc/systemd/system/x.service", "content": "[Unit]\n"}],
              "paths": [{"path": "/etc/x"}], "units": [{"name": "x.service"}], "groups": ["x"],
              "packages": ["x"], "requires": ["/usr/bin/x"], "users": [{"name": "x", "group": "x"}]}
    line = state.invocation_line(params)
    assert "/etc/x/password" in line and "x.service" in line
    assert "s3cret" not in line and "[Unit]" not in line


# --- the module's own argument handling (it runs without Ansible's module library) -------------------

def test_parse_arguments_fills_the_defaults_and_reads_check_and_diff_mode():
    params, check_mode, diff_mode = state.parse_arguments(json.dumps({
        "files": [{"dest": "/etc/x.yml", "content": "a: 1\n"}], "groups": ["x"],
        "_ansible_check_mode": True, "_ansible_diff": False, "_ansible_verbosity": 0}))
    assert check_mode is True and diff_mode is False
    assert params["files"] == [{"dest": "/etc/x.yml", "content": "a: 1\n", "secret": False}]
    assert params["groups"] == ["x"] and params["users"] == [] and params["requires"] == []


@pytest.mark.parametrize("arguments, message", [
    ({"file": []}, "Unsupported parameters for monstack_state: file"),
    ({"groups": "x"}, "groups must be a list"),
    ({"packages": [{"name": "x"}]}, "packages must be a list of strings"),
    ({"units": ["x.service"]}, "units must be a list of dictionaries"),
    ({"files": [{"content": "x"}]}, "every entry needs a dest"),
    ({"files": [{"dest": "/etc/x", "contents": "x"}]}, "takes only content"),
    ({"files": [{"dest": "/etc/x", "content": 1}]}, "the content of /etc/x must be a string"),
    ({"files": [{"dest": "/etc/x", "secret": "maybe"}]}, "secret of /etc/x must be a boolean"),
])
def test_parse_arguments_refuses_what_the_spec_does_not_allow(arguments, message):
    with pytest.raises(state.StateError, match=message):
        state.parse_arguments(json.dumps(arguments))


def test_mask_hides_every_secret_in_every_string_returned():
    result = {"msg": "x failed: s3cret and s3cret2", "changed_items": ["/etc/s3cret"], "rc": 1}
    assert state.mask(result, ["s3cret2", "s3cret"]) == {
        "msg": "x failed: ******** and ********", "changed_items": ["/etc/********"], "rc": 1}


def test_host_run_command_runs_without_a_shell_and_reports_a_missing_program():
    host = state.Host({}, check_mode=False)
    assert host.run_command(["sh", "-c", "echo $LC_ALL; cat"]) == (0, "C\n", "")  # stdin is /dev/null
    rc, _, err = host.run_command(["/nonexistent/program"])
    assert rc == 127 and "nonexistent" in err
    with pytest.raises(state.StateError, match="failed \\(rc 3\\)"):
        host.run_command(["sh", "-c", "exit 3"], check_rc=True)


def _run_module(tmp_path, arguments):
    """The module as the controller sends it: the marker replaced by the arguments' JSON, run by Python."""
    source = (REPO_ROOT / "plugins" / "modules" / "monstack_state.py").read_text()
    marker = "<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"
    assert source.count(marker) == 1
    done = subprocess.run([sys.executable, "-"], input=source.replace(marker, json.dumps(arguments)),
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    return done.returncode, json.loads(done.stdout)


def test_the_module_run_writes_a_file_then_finds_it_unchanged(tmp_path):
    arguments = {"files": [{"dest": str(tmp_path / "x.yml"), "content": "x: 1\n", "mode": "0640"}],
                 "_ansible_diff": True}
    rc, result = _run_module(tmp_path, arguments)
    assert rc == 0 and result["changed"] is True and result["changed_files"] == [str(tmp_path / "x.yml")]
    assert result["diff"][0]["after"] == "x: 1\n" and mode_of(tmp_path / "x.yml") == 0o640
    rc, result = _run_module(tmp_path, arguments)
    assert rc == 0 and result["changed"] is False and result["diff"] == []


def test_content_of_any_text_reaches_the_file_exactly(tmp_path):
    # The arguments sit in a raw triple-quoted string of the module's text: quotes, backslashes and
    # the like in a file must still arrive byte for byte.
    content = 'a = """x"""\nb = \'\'\'y\'\'\'\nc = "\\\\" \\"\nd: é ✓\n\\'
    rc, result = _run_module(tmp_path, {"files": [{"dest": str(tmp_path / "odd"), "content": content}]})
    assert rc == 0 and result["changed"] is True
    assert (tmp_path / "odd").read_text(encoding="utf-8") == content


def test_a_failed_module_run_says_why_and_never_shows_a_secret(tmp_path):
    arguments = {"files": [{"dest": str(tmp_path / "secret"), "content": "s3cret-value", "secret": True,
                            "validate": "sh -c 'cat %s; exit 1'"}], "_ansible_check_mode": False}
    rc, result = _run_module(tmp_path, arguments)
    assert rc == 1 and result["failed"] is True and "failed to validate" in result["msg"]
    assert "s3cret-value" not in json.dumps(result) and not (tmp_path / "secret").exists()


def test_the_module_names_what_cannot_be_parsed(tmp_path):
    rc, result = _run_module(tmp_path, {"group": ["x"]})
    assert rc == 1 and result["failed"] is True and "Unsupported parameters" in result["msg"]


# --- paths the stack does not own ------------------------------------------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes files owned by another user")
NOBODY = pwd.getpwnam("nobody")


def test_create_only_leaves_an_existing_directory_exactly_as_it_is(tmp_path):
    parent = tmp_path / "prometheus"
    parent.mkdir()
    os.chmod(parent, 0o771)
    entry = {"path": str(parent), "owner": "nobody", "group": MY_GROUP, "mode": "0700", "create_only": True}
    changed, before, after = state.ensure_path(entry, check_mode=False)
    assert not changed and before == after and after["mode"] == "0771" and after["owner"] == ME
    assert mode_of(parent) == 0o771 and os.lstat(parent).st_uid == os.getuid()
    # Nor does a whole run report it.
    module = FakeSystemctl()
    module.params, module.check_mode = dict(_params(tmp_path, tmp_path), paths=[entry], files=[], units=[]), False
    result = _result()
    state.run(module, result)
    assert result["changed_items"] == [] and mode_of(parent) == 0o771


def test_create_only_makes_a_missing_directory_with_the_attributes_given(tmp_path):
    path = tmp_path / "lib" / "prometheus"
    entry = {"path": str(path), "owner": ME, "group": MY_GROUP, "mode": "0750", "create_only": "yes"}
    assert state.ensure_path(entry, check_mode=True)[0] and not (tmp_path / "lib").exists()
    changed, before, after = state.ensure_path(entry, check_mode=False)
    assert changed and before["state"] == "absent"
    assert after == {"path": str(path), "state": "directory", "owner": ME, "group": MY_GROUP, "mode": "0750"}
    assert mode_of(path) == 0o750
    os.chmod(path, 0o700)  # from now on, someone else's business
    assert state.ensure_path(entry, check_mode=False)[0] is False and mode_of(path) == 0o700


# The host's own system directories are only ever asked about in check mode, which changes nothing
# even should the refusal break; the refusals that would change something use a temporary directory
# made a system directory for the test.

@pytest.fixture
def system_directory(tmp_path, monkeypatch):
    """tmp/sys, 0755, counted among the system directories for the test."""
    path = tmp_path / "sys"
    path.mkdir()
    os.chmod(path, 0o755)
    monkeypatch.setattr(state, "SYSTEM_DIRECTORIES", state.SYSTEM_DIRECTORIES | {str(path)})
    return path


@pytest.mark.parametrize("path", ["/", "/etc", "/var/lib", "/usr/local/bin", "/etc/systemd/system", "/var/run"])
def test_a_system_directory_is_refused_without_create_only(path):
    with pytest.raises(state.StateError, match=f"^{path} is a system directory"):
        state.ensure_path({"path": path, "owner": "nobody", "mode": "0777"}, check_mode=True)


@pytest.mark.parametrize("path", ["/", "/etc", "/var/lib"])
def test_a_system_directory_with_create_only_is_not_changed(path):
    changed, before, after = state.ensure_path({"path": path, "mode": "0777", "owner": "nobody",
                                                "create_only": True}, check_mode=True)
    assert not changed and before == after and before["state"] == "directory"


def test_a_system_directory_is_left_exactly_as_it_is(system_directory):
    entry = {"path": str(system_directory), "owner": "nobody", "mode": "0700"}
    for check_mode in (True, False):
        with pytest.raises(state.StateError, match=f"^{system_directory} is a system directory"):
            state.ensure_path(entry, check_mode=check_mode)
    assert not state.ensure_path(dict(entry, create_only=True), check_mode=False)[0]
    assert mode_of(system_directory) == 0o755 and os.lstat(system_directory).st_uid == os.geteuid()


def test_a_run_refuses_a_system_directory_before_changing_anything(tmp_path, system_directory):
    module = FakeSystemctl()
    params = dict(_params(tmp_path, tmp_path), units=[])
    params["paths"] = [{"path": str(tmp_path / "mine"), "mode": "0700"},
                       {"path": str(system_directory), "owner": "nobody", "mode": "0700"}]
    module.params, module.check_mode = params, False
    with pytest.raises(state.StateError, match=f"{system_directory} is a system directory"):
        state.run(module, _result())
    assert not (tmp_path / "mine").exists() and module.commands == []
    assert mode_of(system_directory) == 0o755


def test_system_directories_is_a_plain_literal_a_filter_can_read():
    # A controller-side filter plugin loads the constant from this file's text (it cannot import the module).
    tree = ast.parse((REPO_ROOT / "plugins" / "modules" / "monstack_state.py").read_text())
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and [target.id for target in node.targets] == ["SYSTEM_DIRECTORIES"]]
    assert isinstance(value, ast.Call) and value.func.id == "frozenset" and len(value.args) == 1
    assert frozenset(ast.literal_eval(value.args[0])) == state.SYSTEM_DIRECTORIES
    assert {"/", "/etc", "/var/lib", "/usr/local/sbin", "/etc/ssl/private", "/var/run"} <= state.SYSTEM_DIRECTORIES
    assert all(os.path.normpath(path) == path and path.startswith("/") for path in state.SYSTEM_DIRECTORIES)


@pytest.mark.parametrize("suffix", ["etc/x", "/etc/x/", "/etc/./x", "/etc/../x", "/etc//x"])
def test_a_relative_or_unnormalised_path_is_refused(tmp_path, suffix):
    path = suffix if not suffix.startswith("/") else str(tmp_path) + suffix
    (tmp_path / "etc").mkdir()
    with pytest.raises(state.StateError, match="not an absolute, normalised path") as refused:
        state.ensure_path({"path": path, "mode": "0700"}, check_mode=False)
    assert repr(path) in str(refused.value)
    with pytest.raises(state.StateError, match="not an absolute, normalised path"):
        state.ensure_file(RunningModule(), {"dest": path, "content": "x\n"}, check_mode=False)
    with pytest.raises(state.StateError, match="not an absolute, normalised path"):
        state.ensure_path({"path": path, "state": "absent"}, check_mode=True)
    assert sorted(os.listdir(tmp_path)) == ["etc"] and os.listdir(tmp_path / "etc") == []


def test_a_run_refuses_an_unnormalised_dest_before_changing_anything(tmp_path):
    module = FakeSystemctl()
    params = dict(_params(tmp_path, tmp_path), units=[])
    params["files"] = [{"dest": str(tmp_path) + "//x.yml", "content": "x\n"}]
    module.params, module.check_mode = params, False
    with pytest.raises(state.StateError, match="files: .*not an absolute, normalised path"):
        state.run(module, _result())
    assert os.listdir(tmp_path) == []


def test_missing_parents_are_made_0755_by_root_whatever_the_umask(tmp_path):
    os.chmod(tmp_path, 0o711)
    umask = os.umask(0o077)
    try:
        changed, _, after = state.ensure_path({"path": str(tmp_path / "a" / "b" / "c"), "mode": "0700"},
                                              check_mode=False)
    finally:
        os.umask(umask)
    assert changed and after["mode"] == "0700"
    owner = (0, 0) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    for made in (tmp_path / "a", tmp_path / "a" / "b"):
        assert mode_of(made) == 0o755 and (os.lstat(made).st_uid, os.lstat(made).st_gid) == owner
    assert mode_of(tmp_path) == 0o711  # the existing parent is not touched


# --- symbolic links a daemon's user could plant -----------------------------------------------------------

@pytest.fixture
def planted(tmp_path):
    """tmp/daemon, a directory nobody owns (a daemon's data directory), where nobody replaced `data` with
    a link to tmp/outside, a root directory holding a file and a directory nobody must change."""
    outside, daemon = tmp_path / "outside", tmp_path / "daemon"
    outside.mkdir()
    os.chmod(outside, 0o755)
    (outside / "x.conf").write_text("old\n")
    os.chmod(outside / "x.conf", 0o644)
    (outside / "existing").mkdir()
    os.chmod(outside / "existing", 0o755)
    daemon.mkdir()
    os.chmod(daemon, 0o755)
    os.symlink(str(outside), daemon / "data")
    os.symlink(str(outside / "x.conf"), daemon / "link.conf")
    os.lchown(daemon / "data", NOBODY.pw_uid, NOBODY.pw_gid)
    os.chown(daemon, NOBODY.pw_uid, NOBODY.pw_gid)
    return daemon, outside


def _outside_untouched(outside):
    assert sorted(os.listdir(outside)) == ["existing", "x.conf"]
    assert (outside / "x.conf").read_text() == "old\n" and mode_of(outside / "x.conf") == 0o644
    assert os.lstat(outside / "x.conf").st_uid == 0 and mode_of(outside / "existing") == 0o755
    assert os.lstat(outside / "existing").st_uid == 0


REFUSED_LINK = "daemon/data is a symbolic link in a directory that nobody can change; refusing to follow it"


@as_root
def test_a_planted_link_is_refused_for_a_directory_entry(planted):
    daemon, outside = planted
    for entry in ({"path": str(daemon / "data" / "sub"), "owner": "nobody", "mode": "0700"},
                  {"path": str(daemon / "data" / "existing"), "owner": "nobody", "mode": "0700"},
                  {"path": str(daemon / "data" / "existing"), "create_only": True},
                  {"path": str(daemon / "data" / "x.conf"), "state": "absent"},
                  {"path": str(daemon / "data" / "new.service"), "state": "link", "src": "/dev/null"}):
        for check_mode in (True, False):
            with pytest.raises(state.StateError, match=REFUSED_LINK) as refused:
                state.ensure_path(entry, check_mode=check_mode)
            assert str(refused.value).startswith(entry["path"] + ": ")
    # The link itself, where a directory is wanted: refused as before.
    with pytest.raises(state.StateError, match="exists as a link, not a directory"):
        state.ensure_path({"path": str(daemon / "data"), "owner": "nobody", "mode": "0700"}, check_mode=False)
    _outside_untouched(outside)


@as_root
def test_a_planted_link_is_refused_for_a_file_and_for_an_attribute_change(planted):
    daemon, outside = planted
    for entry in ({"dest": str(daemon / "data" / "x.conf"), "content": "new\n", "owner": "nobody"},
                  {"dest": str(daemon / "data" / "x.conf"), "content": "old\n", "owner": "nobody", "mode": "0666"},
                  {"dest": str(daemon / "data" / "new.conf"), "content": "new\n"}):
        with pytest.raises(state.StateError, match=REFUSED_LINK):
            state.ensure_file(RunningModule(), entry, check_mode=False)
    with pytest.raises(state.StateError, match="exists as a link, not a file"):
        state.ensure_file(RunningModule(), {"dest": str(daemon / "link.conf"), "content": "old\n", "mode": "0666"},
                          check_mode=False)
    _outside_untouched(outside)
    assert os.readlink(daemon / "link.conf") == str(outside / "x.conf")


@as_root
def test_a_hard_link_in_a_daemons_directory_keeps_its_attributes(planted):
    daemon, outside = planted
    os.link(outside / "x.conf", daemon / "hard.conf")
    with pytest.raises(state.StateError, match="has 2 hard links and is in a directory that nobody can change"):
        state.ensure_file(RunningModule(), {"dest": str(daemon / "hard.conf"), "content": "old\n", "owner": "nobody",
                                            "mode": "0666"}, check_mode=False)
    _outside_untouched(outside)
    # New content is a new file renamed over the name: the other name keeps its own file.
    assert state.ensure_file(RunningModule(), {"dest": str(daemon / "hard.conf"), "content": "new\n"},
                             check_mode=False)[0]
    _outside_untouched(outside)
    assert (daemon / "hard.conf").read_text() == "new\n"


@as_root
def test_a_link_in_a_group_writable_root_directory_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 0, grp.getgrnam("nogroup").gr_gid)
    os.chmod(shared, 0o775)
    (tmp_path / "real").mkdir()
    os.symlink(str(tmp_path / "real"), shared / "data")
    with pytest.raises(state.StateError, match="in a directory that the group nogroup can change"):
        state.ensure_path({"path": str(shared / "data" / "sub")}, check_mode=False)
    assert os.listdir(tmp_path / "real") == []


@as_root
def test_a_link_in_a_root_directory_no_one_else_can_change_is_followed(tmp_path):
    trusted, real = tmp_path / "trusted", tmp_path / "real"
    trusted.mkdir()
    real.mkdir()
    os.chmod(trusted, 0o755)
    os.symlink("../real", trusted / "relative")
    os.symlink(str(real), trusted / "absolute")
    changed, _, after = state.ensure_path({"path": str(trusted / "relative" / "sub"), "owner": "nobody",
                                           "mode": "0750"}, check_mode=False)
    assert changed and after["owner"] == "nobody" and (real / "sub").is_dir() and mode_of(real / "sub") == 0o750
    assert state.ensure_file(RunningModule(), {"dest": str(trusted / "absolute" / "f.conf"), "content": "x\n",
                                               "mode": "0640"}, check_mode=False)[0]
    assert (real / "f.conf").read_text() == "x\n" and mode_of(real / "f.conf") == 0o640
    assert state.describe_path(str(trusted / "relative" / "f.conf"))["mode"] == "0640"


def test_the_systems_own_links_are_followed():
    # Merged /usr (/lib -> usr/lib) and /var/run -> /run: links in root's directories.
    for link, real in (("/var/run", "/run"), ("/lib", "/usr/lib"), ("/bin", "/usr/bin")):
        if not os.path.islink(link):
            continue
        descriptor = state._open_directory(link)
        try:
            assert (os.fstat(descriptor).st_dev, os.fstat(descriptor).st_ino) == (os.stat(real).st_dev,
                                                                                   os.stat(real).st_ino)
        finally:
            os.close(descriptor)


def test_a_loop_of_links_is_refused(tmp_path):
    os.chmod(tmp_path, 0o755)
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(state.StateError, match="more than 40 symbolic links"):
        state.ensure_path({"path": str(tmp_path / "a" / "sub")}, check_mode=False)


# --- previous versions: kept, put back, forgotten -----------------------------------------------------------

def _previous_params(tmp_path, files=(), previous="keep", units=()):
    return {"groups": [], "users": [], "paths": [], "packages": [], "requires": [], "files": list(files),
            "units": list(units), "previous_dir": str(tmp_path / "previous" / "prometheus"), "previous": previous}


def _run(params, check_mode=False, show="", module=None):
    module = module or FakeSystemctl(show=show)
    module.params, module.check_mode = params, check_mode
    result = _result()
    state.run(module, result)
    return result, module


def _manifest(tmp_path):
    with open(tmp_path / "previous" / "prometheus" / "manifest.json", encoding="utf-8") as handle:
        return json.load(handle)["files"]


def _copy(tmp_path, record):
    return (tmp_path / "previous" / "prometheus" / record["copy"]).read_text()


@pytest.fixture
def live(tmp_path):
    """tmp/etc holding prometheus.yml (v1, 0644), before a play changes it and adds rules.yml."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "prometheus.yml").write_text("v1\n")
    os.chmod(tmp_path / "etc" / "prometheus.yml", 0o644)
    return tmp_path / "etc"


def test_keep_records_the_state_before_the_first_change_only(tmp_path, live):
    config, rules = str(live / "prometheus.yml"), str(live / "rules.yml")
    result, _ = _run(_previous_params(tmp_path, [{"dest": config, "content": "v2\n", "mode": "0640"},
                                                 {"dest": rules, "content": "r1\n"}]))
    assert result["changed_files"] == [config, rules] and result["restored"] == []
    first = _manifest(tmp_path)
    assert [(record["dest"], record["state"]) for record in first] == [(config, "file"), (rules, "absent")]
    assert first[0]["mode"] == "0644" and first[0]["owner"] == ME and _copy(tmp_path, first[0]) == "v1\n"
    previous = tmp_path / "previous" / "prometheus"
    assert mode_of(previous) == 0o700 and mode_of(tmp_path / "previous") == 0o755
    assert mode_of(previous / first[0]["copy"]) == 0o600
    assert sorted(os.listdir(previous)) == sorted(["manifest.json", first[0]["copy"]])
    # A second run of the same play: the first state wins.
    _run(_previous_params(tmp_path, [{"dest": config, "content": "v3\n", "mode": "0600"},
                                     {"dest": rules, "content": "r2\n"}]))
    assert _manifest(tmp_path) == first and _copy(tmp_path, first[0]) == "v1\n"
    assert (live / "prometheus.yml").read_text() == "v3\n"


def test_an_unchanged_file_is_not_recorded_and_makes_no_previous_dir(tmp_path, live):
    result, _ = _run(_previous_params(tmp_path, [{"dest": str(live / "prometheus.yml"), "content": "v1\n"}]))
    assert result["changed_items"] == [] and not (tmp_path / "previous").exists()


def test_check_mode_records_nothing(tmp_path, live):
    result, _ = _run(_previous_params(tmp_path, [{"dest": str(live / "prometheus.yml"), "content": "v2\n"}]),
                     check_mode=True)
    assert result["changed_files"] == [str(live / "prometheus.yml")]
    assert not (tmp_path / "previous").exists() and (live / "prometheus.yml").read_text() == "v1\n"
    _run(_previous_params(tmp_path, [{"dest": str(live / "prometheus.yml"), "content": "v2\n"}]))
    manifest = _manifest(tmp_path)
    for previous in ("fresh", "forget", "restore"):
        _run(_previous_params(tmp_path, previous=previous), check_mode=True)
        assert _manifest(tmp_path) == manifest and (live / "prometheus.yml").read_text() == "v2\n"


def test_a_manifest_is_written_after_each_file_so_a_failed_run_leaves_a_usable_one(tmp_path, live):
    with pytest.raises(state.StateError, match="failed to validate"):
        files = [{"dest": str(live / "prometheus.yml"), "content": "v2\n"},
                 {"dest": str(live / "rules.yml"), "content": "bad\n", "validate": "false %s"}]
        _run(_previous_params(tmp_path, files), module=RunningModule())
    assert [record["dest"] for record in _manifest(tmp_path)] == [str(live / "prometheus.yml")]
    result, _ = _run(_previous_params(tmp_path, previous="restore"))
    assert result["restored"] == [str(live / "prometheus.yml")] and (live / "prometheus.yml").read_text() == "v1\n"


def test_fresh_clears_a_leftover_of_an_earlier_play(tmp_path, live):
    config = str(live / "prometheus.yml")
    _run(_previous_params(tmp_path, [{"dest": config, "content": "v2\n"}]))
    assert _copy(tmp_path, _manifest(tmp_path)[0]) == "v1\n"
    previous = tmp_path / "previous" / "prometheus"
    (previous / ".manifest.json.dead").write_text("{")  # a killed run's temporary file
    # A play that changes nothing: the leftover goes, quietly.
    result, _ = _run(_previous_params(tmp_path, [{"dest": config, "content": "v2\n"}], previous="fresh"))
    assert result["changed_items"] == [] and os.listdir(previous) == []
    # A play that changes the file records the state before it, not the leftover's.
    _run(_previous_params(tmp_path, [{"dest": config, "content": "v3\n"}]))
    _run(_previous_params(tmp_path, [{"dest": config, "content": "v4\n"}], previous="fresh"))
    [record] = _manifest(tmp_path)
    assert _copy(tmp_path, record) == "v3\n"  # not the leftover's v1


@as_root
def test_restore_puts_back_content_owner_group_and_mode_and_reloads_systemd(tmp_path, live, monkeypatch):
    monkeypatch.setattr(state, "SYSTEMD_DIRS", (str(tmp_path / "systemd") + "/",))
    (tmp_path / "systemd").mkdir()
    unit = tmp_path / "systemd" / "prometheus.service"
    unit.write_text("[Service]\nExecStart=/old\n")
    os.chmod(unit, 0o644)
    config, rules = live / "prometheus.yml", live / "rules.yml"
    os.chown(config, NOBODY.pw_uid, grp.getgrnam("nogroup").gr_gid)
    files = [{"dest": str(config), "content": "v2\n", "owner": "root", "group": "root", "mode": "0600"},
             {"dest": str(rules), "content": "r1\n"},
             {"dest": str(unit), "content": "[Service]\nExecStart=/new\n"}]
    result, module = _run(_previous_params(tmp_path, files))
    assert len(result["changed_files"]) == 3 and ["systemctl", "daemon-reload"] in module.commands

    units = [{"name": "prometheus.service", "state": "restarted"}]
    result, module = _run(_previous_params(tmp_path, previous="restore", units=units), show=show_block())
    assert result["restored"] == [str(config), str(rules), str(unit)]
    assert result["changed_items"] == [str(config), str(rules), str(unit), "unit prometheus.service"]
    assert config.read_text() == "v1\n" and mode_of(config) == 0o644
    assert (os.lstat(config).st_uid, os.lstat(config).st_gid) == (NOBODY.pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert not rules.exists() and unit.read_text() == "[Service]\nExecStart=/old\n"
    assert [command[1] for command in module.commands] == ["daemon-reload", "show", "reset-failed", "restart"]
    assert not os.listdir(tmp_path / "previous" / "prometheus")  # the manifest and the copies are gone
    assert "ExecStart" not in json.dumps(result)  # states are shown, never content
    # Nothing recorded any more: a second restore does nothing.
    result, module = _run(_previous_params(tmp_path, previous="restore"))
    assert result["restored"] == [] and result["changed_items"] == [] and module.commands == []


@as_root
def test_restore_stops_and_disables_a_unit_new_in_the_play_before_removing_it(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "SYSTEMD_DIRS", (str(tmp_path / "systemd") + "/",))
    (tmp_path / "systemd").mkdir()
    unit = tmp_path / "systemd" / "loki.service"
    result, module = _run(_previous_params(tmp_path, [{"dest": str(unit), "content": "[Service]\n"}]))
    assert result["changed_files"] == [str(unit)]
    result, module = _run(_previous_params(tmp_path, previous="restore"))
    assert result["restored"] == [str(unit)] and not unit.exists()
    assert module.commands[0] == ["systemctl", "disable", "--now", "--", "loki.service"]
    assert ["systemctl", "daemon-reload"] in module.commands


def test_restore_in_check_mode_only_says_what_it_would_put_back(tmp_path, live):
    config = live / "prometheus.yml"
    _run(_previous_params(tmp_path, [{"dest": str(config), "content": "v2\n"},
                                     {"dest": str(live / "same.yml"), "content": "s\n"}]))
    (live / "same.yml").unlink()  # already as it was before
    manifest = _manifest(tmp_path)
    result, _ = _run(_previous_params(tmp_path, previous="restore"), check_mode=True)
    assert result["restored"] == [str(config)] and result["changed_items"] == [str(config)]
    assert config.read_text() == "v2\n" and _manifest(tmp_path) == manifest


def test_restore_puts_back_only_the_attributes_when_the_content_holds(tmp_path, live):
    config = live / "prometheus.yml"
    _run(_previous_params(tmp_path, [{"dest": str(config), "content": "v1\n", "mode": "0600"}]))
    assert mode_of(config) == 0o600
    result, _ = _run(_previous_params(tmp_path, previous="restore"))
    assert result["restored"] == [str(config)] and mode_of(config) == 0o644 and config.read_text() == "v1\n"


def test_restore_without_a_manifest_does_nothing(tmp_path):
    result, module = _run(_previous_params(tmp_path, previous="restore"))
    assert result["restored"] == [] and result["changed_items"] == [] and module.commands == []
    assert not (tmp_path / "previous").exists()


def test_forget_removes_the_manifest_and_the_copies_quietly(tmp_path, live):
    _run(_previous_params(tmp_path, [{"dest": str(live / "prometheus.yml"), "content": "v2\n"}]))
    (tmp_path / "previous" / "prometheus" / "unrelated").write_text("kept")
    result, _ = _run(_previous_params(tmp_path, previous="forget"))
    assert result["changed_items"] == [] and os.listdir(tmp_path / "previous" / "prometheus") == ["unrelated"]
    assert (live / "prometheus.yml").read_text() == "v2\n"


def test_a_previous_dir_anyone_else_can_change_or_that_is_a_link_is_refused(tmp_path, live):
    (tmp_path / "previous").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), tmp_path / "previous" / "prometheus")
    params = _previous_params(tmp_path, [{"dest": str(live / "prometheus.yml"), "content": "v2\n"}])
    with pytest.raises(state.StateError, match="exists as a link, not a directory"):
        _run(params)
    assert (live / "prometheus.yml").read_text() == "v1\n" and os.listdir(tmp_path / "elsewhere") == []
    os.unlink(tmp_path / "previous" / "prometheus")
    (tmp_path / "previous" / "prometheus").mkdir()
    os.chmod(tmp_path / "previous" / "prometheus", 0o777)
    with pytest.raises(state.StateError, match="can change; refusing to trust what it holds"):
        _run(params)
    with pytest.raises(state.StateError, match="can change; refusing to trust what it holds"):
        _run(_previous_params(tmp_path, previous="restore"))


def test_a_tampered_manifest_is_refused(tmp_path, live):
    _run(_previous_params(tmp_path, [{"dest": str(live / "prometheus.yml"), "content": "v2\n"}]))
    manifest = tmp_path / "previous" / "prometheus" / "manifest.json"
    record = _manifest(tmp_path)[0]
    for files in ([dict(record, copy="../../etc/shadow")], [dict(record, dest="etc/passwd")], "x"):
        manifest.write_text(json.dumps({"version": 1, "files": files}))
        with pytest.raises(state.StateError):
            _run(_previous_params(tmp_path, previous="restore"))
    manifest.write_text("{")
    with pytest.raises(state.StateError, match="cannot be read"):
        _run(_previous_params(tmp_path, previous="restore"))
    assert (live / "prometheus.yml").read_text() == "v2\n"


def test_a_restored_secret_never_shows_in_the_module_output(tmp_path):
    dest = tmp_path / "etc" / "password"
    dest.parent.mkdir()
    dest.write_text("s3cret-one\n")
    previous = {"previous_dir": str(tmp_path / "previous" / "alertmanager"), "_ansible_diff": True}
    rc, result = _run_module(tmp_path, dict(previous, files=[{"dest": str(dest), "content": "s3cret-two\n",
                                                              "secret": True, "mode": "0600"}]))
    assert rc == 0 and result["changed"] is True and "s3cret" not in json.dumps(result)
    copies = [name for name in os.listdir(tmp_path / "previous" / "alertmanager") if name.startswith("copy-")]
    assert [mode_of(tmp_path / "previous" / "alertmanager" / name) for name in copies] == [0o600]
    rc, result = _run_module(tmp_path, dict(previous, previous="restore"))
    assert rc == 0 and result["changed"] is True and result["restored"] == [str(dest)]
    assert "s3cret" not in json.dumps(result) and dest.read_text() == "s3cret-one\n"


@pytest.mark.parametrize("arguments, message", [
    ({"previous": "undo", "previous_dir": "/var/lib/monstack/previous/x"}, "previous must be one of keep, fresh"),
    ({"previous_dir": "var/lib/monstack"}, "previous_dir: 'var/lib/monstack' is not an absolute, normalised path"),
    ({"previous_dir": "/var/lib/monstack/"}, "is not an absolute, normalised path"),
    ({"previous_dir": "/var/lib"}, "previous_dir: /var/lib is a system directory"),
    ({"previous_dir": ["/x"]}, "previous_dir must be a string"),
    ({"previous": "restore"}, "previous: restore needs previous_dir"),
    ({"previous": "restore", "previous_dir": "/var/lib/monstack/previous/x",
      "files": [{"dest": "/etc/x", "content": "x"}]}, "files cannot be given with previous: restore"),
])
def test_parse_arguments_checks_the_previous_options(arguments, message):
    with pytest.raises(state.StateError, match=message):
        state.parse_arguments(json.dumps(arguments))


def test_the_documentation_is_yaml_naming_every_option_the_module_takes():
    documentation, returned = yaml.safe_load(state.DOCUMENTATION), yaml.safe_load(state.RETURN)
    assert set(documentation["options"]) == set(state.ARGUMENT_LISTS) | set(state.ARGUMENT_STRINGS)
    assert documentation["options"]["previous"]["choices"] == list(state.PREVIOUS_CHOICES)
    assert {"restored", "changed_items", "missing"} <= set(returned)


def test_parse_arguments_reads_the_previous_options_with_their_defaults():
    params, _, _ = state.parse_arguments(json.dumps({}))
    assert (params["previous"], params["previous_dir"]) == ("keep", "")
    params, _, _ = state.parse_arguments(json.dumps({"previous": "forget", "previous_dir": "/var/lib/monstack/p/x",
                                                     "paths": [{"path": "/x", "create_only": True}]}))
    assert (params["previous"], params["previous_dir"]) == ("forget", "/var/lib/monstack/p/x")


# --- units restarted ----------------------------------------------------------------------------------------

def test_a_unit_to_restart_is_always_restarted_and_enabled_when_asked():
    fake = FakeSystemctl(show_block() + "\n" + show_block(active="inactive", unit_file="disabled"))
    units = [{"name": "a.service", "state": "restarted"},
             {"name": "b.service", "enabled": True, "state": "restarted"}]
    assert state.ensure_units(fake, units, [], check_mode=False) == ["unit a.service", "unit b.service"]
    # A unit that failed over and over hit its start limit: reset-failed lets the restart through.
    assert fake.commands[1:] == [["systemctl", "reset-failed", "--", "a.service"],
                                 ["systemctl", "restart", "--", "a.service"],
                                 ["systemctl", "enable", "--", "b.service"],
                                 ["systemctl", "reset-failed", "--", "b.service"],
                                 ["systemctl", "restart", "--", "b.service"]]
    fake = FakeSystemctl(show_block())
    assert state.ensure_units(fake, units[:1], [], check_mode=True) == ["unit a.service"]
    assert [command[1] for command in fake.commands] == ["show"]


def test_a_restart_waits_for_a_missing_requirement_and_follows_the_files(tmp_path):
    (tmp_path / "etc").mkdir()
    units = [{"name": "daemon.service", "state": "restarted"}]
    params = dict(_params(tmp_path, tmp_path / "missing"), paths=[], units=units)
    result, module = _run(params, show=show_block())
    assert result["missing"] and module.commands == []
    params = dict(params, requires=[])
    result, module = _run(params, show=show_block())
    assert result["changed_items"] == [str(tmp_path / "etc" / "daemon.yml"), "unit daemon.service"]
    assert module.commands[-1] == ["systemctl", "restart", "--", "daemon.service"]


# --- listeners a firewall would cut off -----------------------------------------------------------------

PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1
   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1
   2: 0A00000F:01BB 0A000010:C350 01 00000000:00000000 00:00000000 00000000     0        0 1003 1
"""
PROC_TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1
"""
PROC_UDP = """   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  0: 00000000:2396 00000000:0000 07 00000000:00000000 00:00000000 00000000   0        0 1006 2
  1: 0A00000F:8A2A 0A000001:0035 01 00000000:00000000 00:00000000 00000000   0        0 1007 2
"""


def test_listening_sockets_are_read_from_proc_net_without_loopback_or_connected_ones(tmp_path):
    for name, text in (("tcp", PROC_TCP), ("tcp6", PROC_TCP6), ("udp", PROC_UDP)):
        (tmp_path / name).write_text(text)
    sockets = state.listening_sockets(str(tmp_path))
    assert sorted((item["proto"], item["port"], item["address"]) for item in sockets) == [
        ("tcp", 6379, "::"), ("tcp", 8080, "0.0.0.0"), ("udp", 9110, "0.0.0.0")]


def test_cut_listeners_are_those_no_opening_or_closing_names(tmp_path):
    for name, text in (("tcp", PROC_TCP), ("tcp6", PROC_TCP6), ("udp", PROC_UDP)):
        (tmp_path / name).write_text(text)
    sockets = state.listening_sockets(str(tmp_path))
    owners = {"1004": (812, "redis-server"), "1001": (90, "nginx")}
    cut = state.cut_listeners(["8080/tcp"], ["9110/udp"], sockets, owners)
    assert cut == [{"port": 6379, "proto": "tcp", "address": "::", "pid": 812, "process": "redis-server"}]
    assert state.cut_listeners(["8080/tcp", "6379/TCP", "9110/udp"], [], sockets, owners) == []


def test_a_cut_listener_fails_the_run_before_anything_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "cut_listeners", lambda open_ports, closed: [
        {"port": 6379, "proto": "tcp", "address": "0.0.0.0", "pid": 812, "process": "redis-server"}])
    dest = tmp_path / "firewall.nft"
    params = {"groups": [], "users": [], "paths": [], "packages": ["nftables"], "requires": [],
              "files": [{"dest": str(dest), "content": "table inet x {}\n"}], "units": [],
              "listeners_open": ["22/tcp"], "listeners_closed": [], "previous_dir": "", "previous": "keep"}
    module, result = FakeSystemctl(), _result()
    module.params, module.check_mode = params, False
    with pytest.raises(state.StateError, match=r"6379/tcp \(redis-server, pid 812, on 0.0.0.0\)"):
        state.run(module, result)
    assert result["cut_listeners"][0]["port"] == 6379
    assert not dest.exists() and module.commands == [], "nothing is installed, written or run"


def test_the_listeners_of_this_host_are_read_for_real():
    # Whatever listens here, the reading itself works on this kernel: every entry is well formed.
    for item in state.listening_sockets():
        assert item["proto"] in ("tcp", "udp") and 0 < item["port"] < 65536 and not state._loopback(item["address"])
