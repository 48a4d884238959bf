"""plugins/modules/monstack_state.py's functions, run directly on a temporary directory.

Nothing here needs root: owners and groups are the current user's or left unset, and systemctl is a
fake that records what it was asked to run.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys

import pytest

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
            "missing": [], "diff": []}


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
