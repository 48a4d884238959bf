"""The backup program of roles/backup (monstack-backup), on temporary directories of the controller, with
Debian's borg (make installs it).

What restores depend on: an archive is complete or absent, a damaged one is refused before anything
changes, a live Prometheus copy survives files vanishing under it, and a restore that does not start
puts the previous data back. The backup host's side is borg serve itself, reached through a stand-in for
ssh that runs the forced command of the backup host's key line.
"""

from __future__ import annotations

import base64
import errno
import grp
import importlib.machinery
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, inventory_hostvars, load_module, run_playbook, write_inventory

backup_filter = load_module("plugins/filter/backup.py", "monstack_backup")
PROGRAM = Path(__file__).resolve().parents[2] / "roles/backup/files/monstack-backup"


def _load():
    loader = importlib.machinery.SourceFileLoader("monstack_backup", str(PROGRAM))
    spec = importlib.util.spec_from_loader("monstack_backup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


mb = _load()
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


PASSPHRASE = "unit-test-passphrase-7Qx"


def component(tmp_path: Path, method: str = "directory", **extra) -> dict:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (tmp_path / "textfile").mkdir(exist_ok=True)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE)
    passphrase.chmod(0o600)
    return {"passphrase_file": str(passphrase),
            "name": "thing", "method": method, "restore_scope": "directory", "data_dir": str(data),
            "service": "thing", "owner": ME, "owner_group": MY_GROUP, "config_paths": [],
            "backup_dir": str(tmp_path / "backups"), "retention_count": 3, "compression_level": 1,
            "textfile_dir": str(tmp_path / "textfile"), "remote": None, "restore_settle_seconds": 0,
            "min_free_mb": 0, "shrink_limit_percent": 50} | extra


def members(spec: dict, name: str) -> list[str]:
    with mb.read_archive(spec, mb.local_repository(spec), name) as tar:
        return tar.getnames()


def borg(spec: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["borg", *args], env=mb.borg_environment(spec), capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)


def segments(repo: Path) -> dict[str, int]:
    """A borg repository's data segment files and their sizes."""
    return {str(p.relative_to(repo)): p.stat().st_size for p in (repo / "data").rglob("*") if p.is_file()}


@pytest.fixture
def systemctl(monkeypatch):
    """Records systemctl calls instead of making them; `fail` lists actions that fail."""
    calls: list[tuple[str, str]] = []
    fail: set[str] = set()

    def fake(action, service):
        calls.append((action, service))
        return action not in fail

    monkeypatch.setattr(mb, "_systemctl", fake)
    # After a start: "active" with no restart, unless "stays-up" is among the failures (a daemon that dies).
    monkeypatch.setattr(mb, "_service_state",
                        lambda service: ("failed", "1") if "stays-up" in fail else ("active", "0"))
    return calls, fail


def archived_then_changed(tmp_path: Path) -> tuple[dict, Path, str]:
    """A component whose index was "archived" when the archive was made and is "current" now."""
    spec = component(tmp_path)
    data = Path(spec["data_dir"])
    (data / "index").write_text("archived")
    archive = mb.write_archive(spec)[0]
    (data / "index").write_text("current")
    return spec, data, archive


def test_archive_holds_manifest_data_and_config_readable_by_owner_only(tmp_path):
    """A symbolic link in the configuration (kept for reference) is left out, not fatal."""
    spec = component(tmp_path)
    config = tmp_path / "etc-thing"
    config.mkdir()
    (config / "thing.yml").write_text("setting: 1")
    os.symlink("/etc/hostname", config / "linked.yml")
    spec["config_paths"] = [str(config)]
    (Path(spec["data_dir"]) / "index").write_text("state that must not be readable " * 20)
    archive = mb.write_archive(spec)[0]
    names = members(spec, archive)
    assert names[0] == "MANIFEST.json"
    assert "data/index" in names and f"config/{str(config / 'thing.yml').lstrip('/')}" in names
    assert not any(name.endswith("linked.yml") for name in names)
    assert mb.verify(spec, archive)["component"] == "thing"
    backups = Path(spec["backup_dir"])
    assert oct(backups.stat().st_mode & 0o777) == oct((backups / "repository").stat().st_mode & 0o777) == "0o700"
    for path in backups.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"must not be readable" not in content and PASSPHRASE.encode() not in content, path


def test_prometheus_copy_takes_wal_and_head_before_blocks_and_skips_lock_and_unfinished_blocks(tmp_path):
    spec = component(tmp_path, "prometheus_tsdb")
    data = Path(spec["data_dir"])
    for path in ("wal/00000001", "wal/checkpoint.00000000/00000000", "chunks_head/000001",
                 "01BLOCK/meta.json", "01BLOCK/index", "01BLOCK/chunks/000001",
                 "01COMPACTING.tmp-for-creation/meta.json", "01NOMETA/index"):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text(path)
    (data / "lock").write_text("")
    (data / "queries.active").write_text("")
    names = [n for n in members(spec, mb.write_archive(spec)[0])
             if n.startswith("data/") and "." not in Path(n).name[:1]]
    assert "data/lock" not in names and "data/queries.active" not in names
    assert not [n for n in names if "COMPACTING" in n or "NOMETA" in n]
    assert names.index("data/wal/00000001") < names.index("data/01BLOCK/index")
    assert names.index("data/chunks_head/000001") < names.index("data/01BLOCK/meta.json")


def open_in_this_process(path: Path) -> bool:
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_copy_starts_again_when_a_file_vanishes_and_leaves_no_partial_archive(tmp_path, monkeypatch, capfd):
    """A real deleter, as a WAL truncation is: while the copy reads the first file, another thread
    removes one the copy has listed but not reached. The copy starts again and the archive holds the
    directory as it is after the removal."""
    spec = component(tmp_path)
    data = Path(spec["data_dir"])
    big, doomed = data / "a-segment", data / "b-segment"
    with big.open("wb") as handle:
        handle.write(b"\0" * (16 << 20))
    doomed.write_text("truncated away")
    monkeypatch.setattr(mb, "COPY_RETRY_DELAY", 0)
    removed = threading.Event()

    def deleter():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not open_in_this_process(big):
            time.sleep(0.001)
        if open_in_this_process(big):
            doomed.unlink()
            removed.set()
    thread = threading.Thread(target=deleter)
    thread.start()
    archive = mb.write_archive(spec)[0]
    thread.join()
    assert removed.is_set(), "the deleter never saw the copy reading the first file"
    assert "attempt 1: " in capfd.readouterr().err and "b-segment" not in " ".join(members(spec, archive))
    assert "data/a-segment" in members(spec, archive) and mb.verify(spec, archive)
    assert mb.archive_names(spec) == [archive], "the first, failed attempt left an archive"

    def gone(tar, spec_):
        raise FileNotFoundError(2, "No such file", "wal/00000004")

    monkeypatch.setitem(mb.COLLECTORS, "directory", gone)
    with pytest.raises(mb.BackupError, match="could not archive"):
        mb.write_archive(spec, now=mb.datetime.datetime(2030, 1, 1, tzinfo=mb.datetime.timezone.utc))[0]
    assert mb.archive_names(spec) == [archive]


def test_only_the_newest_archives_are_kept(tmp_path):
    spec = component(tmp_path)
    (Path(spec["data_dir"]) / "index").write_text("state")
    made = [mb.write_archive(spec, now=mb.datetime.datetime(2030, 1, day, tzinfo=mb.datetime.timezone.utc))[0]
            for day in range(1, 6)]
    removed = mb.prune(spec)
    assert removed == made[:2]
    assert mb.archive_names(spec) == made[2:]


def damage(spec: dict) -> None:
    """Bytes overwritten in the middle of every segment of the host's repository."""
    for segment in (Path(mb.local_repository(spec)) / "data").rglob("*"):
        if segment.is_file() and segment.stat().st_size > 200:
            with segment.open("r+b") as handle:
                handle.seek(segment.stat().st_size // 2)
                handle.write(b"\0garbage\0" * 8)


def test_damaged_or_missing_archive_is_refused(tmp_path):
    spec = component(tmp_path)
    (Path(spec["data_dir"]) / "index").write_bytes(os.urandom(50000))
    archive = mb.write_archive(spec)[0]
    with pytest.raises(mb.BackupError, match="does not exist"):
        mb.choose_archive(spec, "thing-20000101T000000Z")
    damage(spec)
    with pytest.raises(mb.BackupError, match="corrupt"):
        mb.verify(spec, archive)


def test_archive_of_another_component_or_with_escaping_paths_is_refused(tmp_path):
    spec = component(tmp_path)
    (Path(spec["data_dir"]) / "index").write_text("state")
    archive = mb.write_archive(spec)[0]
    with pytest.raises(mb.BackupError, match="not of 'other'"):
        mb.verify(spec | {"name": "other"}, archive)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        tar.add(str(Path(spec["data_dir"]) / "index"), arcname="data/../../etc/passwd")
    imported = borg(spec, "import-tar", f"{mb.local_repository(spec)}::thing-evil", str(evil))
    assert imported.returncode == 0, imported.stderr
    with pytest.raises(mb.BackupError, match="unexpected entry"):
        mb.verify(spec, "thing-evil")


def test_failed_run_keeps_the_last_success_time_and_says_it_failed(tmp_path):
    spec = component(tmp_path)
    (Path(spec["data_dir"]) / "index").write_text("state")
    assert mb.run(spec) == 0
    archive = mb.archive_names(spec)[-1]
    metrics = (tmp_path / "textfile/monstack_backup_thing.prom").read_text()
    assert 'monstack_backup_last_run_success{backup="thing"} 1' in metrics
    assert f'monstack_backup_last_success_timestamp_seconds{{backup="thing"}} {mb.archive_time(archive)}' in metrics
    assert 'monstack_backup_last_size_bytes{backup="thing"} 5' in metrics

    spec["data_dir"] = str(tmp_path / "absent")
    assert mb.run(spec) == 1
    metrics = (tmp_path / "textfile/monstack_backup_thing.prom").read_text()
    assert 'monstack_backup_last_run_success{backup="thing"} 0' in metrics
    assert f'monstack_backup_last_success_timestamp_seconds{{backup="thing"}} {mb.archive_time(archive)}' in metrics
    assert 'monstack_backup_archives{backup="thing"} 1' in metrics


def metric(tmp_path: Path, name: str) -> str:
    text = (tmp_path / "textfile/monstack_backup_thing.prom").read_text()
    return re.search(rf'^{name}{{backup="thing"}} (\S+)$', text, re.M).group(1)


@pytest.mark.parametrize("kind", ["symbolic link to a file", "symbolic link to a directory", "FIFO"])
def test_data_an_archive_cannot_restore_fails_the_run_and_keeps_the_last_good_archive(tmp_path, kind):
    spec = component(tmp_path, retention_count=1)
    data = Path(spec["data_dir"])
    (data / "index").write_text("state")
    assert mb.run(spec) == 0
    [good] = mb.archive_names(spec)
    if kind == "FIFO":
        os.mkfifo(data / "odd")
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere/file").write_text("outside")
        os.symlink(tmp_path / ("elsewhere" if "directory" in kind else "elsewhere/file"), data / "odd")
    assert mb.run(spec) == 1
    assert mb.archive_names(spec) == [good] and mb.verify(spec, good)
    assert metric(tmp_path, "monstack_backup_last_run_success") == "0"


def test_a_hard_link_is_archived_as_a_file_and_restores(tmp_path, systemctl):
    spec = component(tmp_path)
    data = Path(spec["data_dir"])
    (data / "index").write_text("state")
    os.link(data / "index", data / "index.again")
    assert mb.run(spec) == 0
    archive = mb.archive_names(spec)[-1]
    (data / "index").write_text("lost")
    assert mb.restore(spec, archive) == 0
    assert (data / "index").read_text() == (data / "index.again").read_text() == "state"


@pytest.mark.parametrize("emptied", ["emptied", "shrunk to a tenth"])
def test_data_far_smaller_than_the_last_archive_fails_and_rotates_nothing_out(tmp_path, emptied):
    spec = component(tmp_path, retention_count=1)
    data = Path(spec["data_dir"])
    (data / "index").write_text("x" * 1000)
    assert mb.run(spec) == 0
    [good] = mb.archive_names(spec)
    if emptied == "emptied":
        (data / "index").unlink()
    else:
        (data / "index").write_text("x" * 100)
    assert mb.run(spec) == 1
    assert mb.archive_names(spec) == [good]
    assert metric(tmp_path, "monstack_backup_last_run_data_shrunk") == "1"
    assert mb.run(spec, accept_smaller=True) == 0 and mb.archive_names(spec) != [good]
    assert metric(tmp_path, "monstack_backup_last_run_data_shrunk") == "0"


def test_too_little_free_space_refuses_to_start(tmp_path, monkeypatch):
    spec = component(tmp_path, min_free_mb=1)
    (Path(spec["data_dir"]) / "index").write_text("state")
    monkeypatch.setattr(mb.shutil, "disk_usage", lambda path: mb.shutil._ntuple_diskusage(10, 10, 100))
    assert mb.run(spec) == 1
    assert metric(tmp_path, "monstack_backup_last_run_space_short") == "1"
    assert mb.archive_names(spec) == []


def test_a_later_run_needs_room_for_what_borg_adds_not_for_the_whole_data_again(tmp_path, monkeypatch):
    """Deduplicated: the second run of unchanged data adds little, and must not ask for the data's size."""
    spec = component(tmp_path, min_free_mb=1)
    (Path(spec["data_dir"]) / "index").write_bytes(os.urandom(4 * 1024 * 1024))
    assert mb.run(spec) == 0
    added = json.loads((mb.component_dir(spec) / mb.LAST_VERIFIED).read_text())["added_bytes"]
    assert 3 * 1024 * 1024 < added < 6 * 1024 * 1024, added
    room = 1024 * 1024 + added + 1  # enough for the growth of the first run, far from data plus margin twice
    monkeypatch.setattr(mb.shutil, "disk_usage", lambda path: mb.shutil._ntuple_diskusage(room, 0, room))
    assert mb.run(spec) == 0
    second = json.loads((mb.component_dir(spec) / mb.LAST_VERIFIED).read_text())["added_bytes"]
    assert second < added // 10, (second, added)
    assert metric(tmp_path, "monstack_backup_last_run_space_short") == "0"


def test_a_full_disk_under_borg_is_reported_as_short_of_space():
    # The real thing, a repository on a full file system, is in molecule/backup.
    assert isinstance(mb.borg_error("borg import-tar failed", "...\nOSError: [Errno 28] No space left on device\n"),
                      mb.SpaceShort)
    assert isinstance(mb.borg_error("borg create failed", "Insufficient free space to complete transaction"),
                      mb.SpaceShort)
    assert not isinstance(mb.borg_error("borg list failed", "Repository x does not exist."), mb.SpaceShort)


def test_a_run_killed_mid_archive_leaves_no_archive_and_a_sound_repository(tmp_path, monkeypatch):
    spec = component(tmp_path)
    (Path(spec["data_dir"]) / "index").write_bytes(os.urandom(200000))
    assert mb.run(spec) == 0
    before = mb.archive_names(spec)
    real = mb.COLLECTORS["directory"]

    def killed(tar, spec_):
        real(tar, spec_)
        raise KeyboardInterrupt  # what a signal does halfway through the stream

    monkeypatch.setitem(mb.COLLECTORS, "directory", killed)
    with pytest.raises(KeyboardInterrupt):
        mb.write_archive(spec)
    assert mb.archive_names(spec) == before
    checked = borg(spec, "check", mb.local_repository(spec))
    assert checked.returncode == 0, checked.stderr


def test_two_runs_at_once_do_not_both_proceed(tmp_path):
    spec = component(tmp_path)
    (Path(spec["data_dir"]) / "index").write_text("state")
    with mb.exclusive_run(spec):
        assert mb.run(spec) == 1
    assert mb.run(spec) == 0


def test_an_archive_that_does_not_read_back_is_removed_and_fails_the_run(tmp_path, monkeypatch):
    spec = component(tmp_path, retention_count=1)
    (Path(spec["data_dir"]) / "index").write_text("state")
    assert mb.run(spec) == 0
    [good] = mb.archive_names(spec)
    real = mb.verify

    def broken(spec_, archive, remote=False):
        if archive != good:
            raise mb.BackupError(f"{archive} is corrupt")
        return real(spec_, archive, remote)

    monkeypatch.setattr(mb, "verify", broken)
    assert mb.run(spec) == 1
    assert mb.archive_names(spec) == [good]


def test_no_backup_yet_reports_zero_success_time(tmp_path):
    spec = component(tmp_path, data_dir=str(tmp_path / "absent"))
    assert mb.run(spec) == 1
    metrics = (tmp_path / "textfile/monstack_backup_thing.prom").read_text()
    assert 'monstack_backup_last_success_timestamp_seconds{backup="thing"} 0' in metrics


def test_restore_swaps_the_data_in_and_keeps_what_it_replaced(tmp_path, systemctl):
    calls, _ = systemctl
    spec = component(tmp_path)
    data = Path(spec["data_dir"])
    (data / "wal").mkdir()
    (data / "wal/00000001").write_text("before the loss")
    archive = mb.write_archive(spec)[0]
    (data / "wal/00000001").write_text("after the loss")
    assert mb.restore(spec, archive) == 0
    assert (data / "wal/00000001").read_text() == "before the loss"
    [aside] = tmp_path.glob("data.pre-restore-*")
    assert (aside / "wal/00000001").read_text() == "after the loss"
    assert calls == [("stop", "thing"), ("start", "thing")]
    assert not (tmp_path / ".data.restore").exists()


def test_a_second_restore_keeps_the_first_ones_pre_restore_copy(tmp_path, systemctl):
    spec = component(tmp_path)
    data = Path(spec["data_dir"])
    (data / "index").write_text("archived")
    archive = mb.write_archive(spec)[0]
    for current in ("first loss", "second loss"):
        (data / "index").write_text(current)
        assert mb.restore(spec, archive) == 0
    kept = sorted((aside / "index").read_text() for aside in tmp_path.glob("data.pre-restore-*"))
    assert kept == ["first loss", "second loss"]


@pytest.mark.parametrize("failing", ["the first rename", "the second rename"])
def test_a_swap_that_fails_halfway_puts_the_old_data_back_and_starts_the_service(tmp_path, systemctl,
                                                                                 monkeypatch, failing):
    """EXDEV or EBUSY (a data directory that is a mount point) halfway through the swap."""
    calls, _ = systemctl
    spec, data, archive = archived_then_changed(tmp_path)
    real_rename, renames = os.rename, []

    def rename(*args, **kwargs):
        renames.append(args)
        if len(renames) == (1 if failing == "the first rename" else 2):
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real_rename(*args, **kwargs)

    monkeypatch.setattr(mb.os, "rename", rename)
    with pytest.raises(mb.BackupError, match="previous data is back in place and thing started"):
        mb.restore(spec, archive)
    monkeypatch.setattr(mb.os, "rename", real_rename)
    assert (data / "index").read_text() == "current"
    assert calls[0] == ("stop", "thing") and calls[-1] == ("start", "thing")
    assert not list(tmp_path.glob("data.pre-restore-*")) and not (tmp_path / ".data.restore").exists()


def test_the_service_state_is_read_whatever_order_systemctl_prints_it_in(monkeypatch):
    shown = subprocess.CompletedProcess([], 0, stdout="NRestarts=2\nActiveState=active\n", stderr="")
    monkeypatch.setattr(mb.subprocess, "run", lambda *args, **kwargs: shown)
    assert mb._service_state("thing") == ("active", "2")


def test_undo_restore_puts_back_what_the_last_restore_replaced(tmp_path, systemctl):
    calls, _ = systemctl
    spec, data, archive = archived_then_changed(tmp_path)
    mb.restore(spec, archive)
    assert (data / "index").read_text() == "archived"
    assert mb.undo_restore(spec) == 0
    assert (data / "index").read_text() == "current" and calls[-2:] == [("stop", "thing"), ("start", "thing")]
    with pytest.raises(mb.BackupError, match="no restore of thing to undo"):
        mb.undo_restore(spec)


@pytest.mark.parametrize(("failure", "message"), [("start", "did not start"), ("stays-up", "did not stay up")])
def test_restore_that_does_not_start_or_dies_puts_the_previous_data_back(tmp_path, systemctl, failure, message):
    calls, fail = systemctl
    spec, data, archive = archived_then_changed(tmp_path)
    fail.add(failure)
    with pytest.raises(mb.BackupError, match=f"{message}.*previous data is back"):
        mb.restore(spec, archive)
    assert (data / "index").read_text() == "current"
    assert calls[:2] == [("stop", "thing"), ("start", "thing")] and calls[-1] == ("start", "thing")


def test_restore_refuses_a_damaged_archive_without_stopping_anything(tmp_path, systemctl):
    calls, _ = systemctl
    spec = component(tmp_path)
    data = Path(spec["data_dir"])
    (data / "index").write_text("current")
    archive = mb.write_archive(spec)[0]
    with pytest.raises(mb.BackupError, match="not of 'other'"):  # checked while unpacking, before the stop
        mb.restore(spec | {"name": "other"}, archive)
    damage(spec)
    with pytest.raises(mb.BackupError, match="corrupt"):
        mb.restore(spec, archive)
    assert calls == [] and (data / "index").read_text() == "current"
    assert not (data.parent / ".data.restore").exists()


def test_sqlite_database_is_copied_online_while_written_and_restored_file_by_file(tmp_path, systemctl):
    """Grafana keeps writing while the copy runs (a writer thread committing row after row, as Grafana
    does in WAL mode): the archived database is whole, and holds every row committed before the copy."""
    spec = component(tmp_path, "sqlite", database="grafana.db", restore_scope="files")
    data = Path(spec["data_dir"])
    database = data / "grafana.db"
    with sqlite3.connect(database) as db:
        db.execute("pragma journal_mode=wal")
        db.execute("create table dashboard (title text)")
        db.executemany("insert into dashboard values (?)", [(f"before {n} " + "x" * 500,) for n in range(2000)])
    (data / "plugins").mkdir()
    stop, written = threading.Event(), []

    def grafana():
        with sqlite3.connect(database, timeout=30) as db:
            while not stop.is_set():
                db.execute("insert into dashboard values (?)", (f"during {len(written)}",))
                db.commit()
                written.append(1)

    writer = threading.Thread(target=grafana)
    writer.start()
    try:
        wait = time.monotonic() + 10
        while len(written) < 50 and time.monotonic() < wait:  # the writer is under way before the copy
            time.sleep(0.01)
        archive = mb.write_archive(spec)[0]
    finally:
        stop.set()
        writer.join(timeout=30)
    assert len(written) >= 50, "the writer never got going"
    assert "data/plugins" not in members(spec, archive)
    with sqlite3.connect(database) as db:
        db.execute("delete from dashboard")
    mb.restore(spec, archive)
    with sqlite3.connect(database) as db:
        assert db.execute("pragma integrity_check").fetchall() == [("ok",)]
        assert db.execute("select count(*) from dashboard where title like 'before %'").fetchone() == (2000,)
        during = db.execute("select count(*) from dashboard where title like 'during %'").fetchone()[0]
    assert 50 <= during <= len(written), (during, len(written))
    assert (data / "plugins").is_dir() and list(data.glob("grafana.db.pre-restore-*"))


# --- Restoring beside a directory the daemon's user can write -----------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="hands files to another user")


def _nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def as_nobody(action) -> int:
    """The errno action() fails with in a child process run as the user nobody (0: it succeeded)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(_nobody().pw_gid)
            os.setuid(_nobody().pw_uid)
            action()
        except OSError as error:
            code = error.errno or 255
        except BaseException:
            code = 255
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def nobody_component(tmp_path):
    """A component of the user nobody whose data directory's parent nobody owns, 0750: what older versions
    left of /var/lib/prometheus (prometheus:prometheus) around /var/lib/prometheus/data."""
    nobody = _nobody()
    parent = tmp_path / "lib"
    parent.mkdir()
    os.chmod(parent, 0o750)
    os.chown(parent, nobody.pw_uid, nobody.pw_gid)
    spec = component(tmp_path, data_dir=str(parent / "data"), owner="nobody",
                     owner_group=grp.getgrgid(nobody.pw_gid).gr_name)
    Path(spec["data_dir"]).mkdir()
    return spec


def _state(path: Path) -> dict:
    """Everything under path (itself included) as name -> (owner, group, mode, content of a file)."""
    found = {}
    for entry in [path, *sorted(path.rglob("*"))]:
        info = entry.lstat()
        found[str(entry.relative_to(path))] = (info.st_uid, info.st_gid, oct(info.st_mode),
                                               entry.read_bytes() if entry.is_file() else None)
    return found


@as_root
def test_restore_beside_a_directory_the_daemon_owns_hands_it_the_tree_children_first(nobody_component,
                                                                                    systemctl, monkeypatch):
    spec, nobody = nobody_component, _nobody()
    data = Path(spec["data_dir"])
    (data / "wal").mkdir()
    (data / "wal/00000001").write_text("before the loss")
    (data / "index").write_text("index")
    for name, mode in (("", 0o750), ("wal", 0o750), ("wal/00000001", 0o640), ("index", 0o4775)):
        os.chmod(data / name, mode)
    archive = mb.write_archive(spec)[0]
    (data / "wal/00000001").write_text("after the loss")
    chowned = []
    real_fchown = os.fchown
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: (chowned.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                            real_fchown(fd, uid, gid)))
    assert mb.restore(spec, archive) == 0
    assert (data / "wal/00000001").read_text() == "before the loss"
    modes = {name: (owner, group, mode) for name, (owner, group, mode, _) in _state(data).items()}
    ids = (nobody.pw_uid, nobody.pw_gid)
    # The set-user-ID bit and the bits for others are not restored.
    assert modes == {".": (*ids, "0o40750"), "wal": (*ids, "0o40750"), "wal/00000001": (*ids, "0o100640"),
                     "index": (*ids, "0o100770")}
    # Each entry went to nobody before the directory holding it, the staging directory last.
    staging = str(data.with_name(".data.restore"))
    assert chowned[-1] == staging and len(chowned) == 4
    for position, path in enumerate(chowned):
        assert not [later for later in chowned[position + 1:] if later.startswith(path + "/")], chowned
    assert not data.with_name(".data.restore").exists()
    assert (data.parent.stat().st_uid, oct(data.parent.stat().st_mode)) == (nobody.pw_uid, "0o40750")


@pytest.mark.parametrize("leftover", ["link to a directory", "link to a file", "directory"])
def test_whatever_is_left_at_the_staging_path_is_removed_without_following_it(tmp_path, systemctl, leftover):
    spec, data, archive = archived_then_changed(tmp_path)
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    os.chmod(outside / "passwd", 0o644)
    before = _state(outside)
    staging = tmp_path / ".data.restore"
    if leftover == "directory":
        (staging / "wal").mkdir(parents=True)
        (staging / "wal/stale").write_text("an interrupted restore")
    else:
        staging.symlink_to(outside if leftover == "link to a directory" else outside / "passwd")
    assert mb.restore(spec, archive) == 0
    assert _state(outside) == before
    assert sorted(os.listdir(data)) == ["index"] and (data / "index").read_text() == "archived"
    assert not os.path.lexists(staging)


@as_root
@pytest.mark.parametrize("planted", ["wal", "index"])
def test_extraction_never_follows_a_link_in_the_staging_tree(nobody_component, systemctl, monkeypatch, planted):
    """The staging tree is new and root's only while it fills: nobody can put a link in it, and one there
    all the same (put by root here) makes the restore fail, not write through it."""
    calls, _ = systemctl
    spec = nobody_component
    data = Path(spec["data_dir"])
    (data / "wal").mkdir()
    (data / "wal/00000001").write_text("archived")
    (data / "index").write_text("archived")
    archive = mb.write_archive(spec)[0]
    outside = data.parents[1] / "etc"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    before, current = _state(outside), _state(data)
    real = mb._extract_data

    def planting(tar, staging, spec_, name):
        info = os.fstat(staging)
        assert (info.st_uid, oct(info.st_mode)) == (0, "0o40700")
        assert as_nobody(lambda: os.symlink(outside, "wal", dir_fd=staging)) == errno.EACCES
        os.symlink(outside if planted == "wal" else outside / "passwd", planted, dir_fd=staging)
        return real(tar, staging, spec_, name)

    monkeypatch.setattr(mb, "_extract_data", planting)
    with pytest.raises(mb.BackupError, match="could not unpack"):
        mb.restore(spec, archive)
    assert _state(outside) == before and _state(data) == current
    assert calls == [] and not os.path.lexists(data.with_name(".data.restore"))


@as_root
@pytest.mark.parametrize("link_holder", ["root", "nobody"])
def test_a_linked_parent_is_followed_only_where_no_one_but_root_can_have_placed_it(tmp_path, systemctl, link_holder):
    calls, _ = systemctl
    real = tmp_path / "real"
    real.mkdir()
    holder = tmp_path / "holder"
    holder.mkdir()
    os.chmod(holder, 0o755)
    if link_holder == "nobody":
        os.chown(holder, _nobody().pw_uid, _nobody().pw_gid)
    (holder / "lib").symlink_to(real)
    spec = component(tmp_path, data_dir=str(holder / "lib/data"))
    (real / "data").mkdir()
    (real / "data/index").write_text("archived")
    archive = mb.write_archive(spec)[0]
    (real / "data/index").write_text("current")
    if link_holder == "root":
        assert mb.restore(spec, archive) == 0
        assert (real / "data/index").read_text() == "archived"
    else:
        with pytest.raises(mb.BackupError, match="symbolic link in a directory a user other than root can change"):
            mb.restore(spec, archive)
        assert calls == [] and (real / "data/index").read_text() == "current" and os.listdir(real) == ["data"]


def test_files_method_fails_when_the_daemon_wrote_nothing_yet(tmp_path):
    spec = component(tmp_path, "files", files=["silences", "nflog"], restore_scope="files")
    with pytest.raises(mb.BackupError, match="nothing to back up"):
        mb.write_archive(spec)[0]
    (Path(spec["data_dir"]) / "silences").write_bytes(b"\x01")
    assert "data/silences" in members(spec, mb.write_archive(spec)[0])


def test_unknown_component_names_the_known_ones(tmp_path):
    config = tmp_path / "components.json"
    config.write_text(json.dumps({"prometheus": {}, "alertmanager": {}}))
    with pytest.raises(mb.BackupError, match="known: alertmanager, prometheus"):
        mb.load_component("grafana", config)


def test_every_catalogue_entry_carries_what_the_program_reads():
    """roles/backup/vars/main.yml, resolved as the play resolves it, against the program's needs."""
    catalogue = yaml.safe_load((PROGRAM.parents[1] / "vars/main.yml").read_text())["_backup_catalogue"]
    groups = {spec["group"]: ["host"] for spec in catalogue.values()}
    entries = backup_filter.backup_components(catalogue, "host", groups, inventory_hostvars({"host": {}}))
    assert [e["name"] for e in entries] == sorted(catalogue)
    for entry in entries:
        assert entry["method"] in mb.COLLECTORS and entry["restore_scope"] in ("directory", "files"), entry
        assert {"data_dir", "service", "owner", "config_paths"} <= set(entry), entry
        assert {"files": "files", "sqlite": "database"}.get(entry["method"], "name") in entry, entry


# --- The copy on the backup host ------------------------------------------------------------------------

@pytest.fixture
def remote_spec(tmp_path, monkeypatch):
    """A component whose backup host is this machine: ssh is replaced by a script that runs what the
    backup host's key line forces (roles/backup/vars/main.yml, _backup_remote_key_options), whatever the
    client asks for - borg serve, append-only, restricted to this host's repository."""
    store = tmp_path / "store/repos"
    store.mkdir(parents=True)
    own = store / "host-1"
    forced = yaml.safe_load((PROGRAM.parents[1] / "vars/main.yml").read_text())["_backup_remote_serve"]
    command = forced.replace("{{ _backup_remote_repository }}", str(own))
    ssh = tmp_path / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec {command}\n")
    ssh.chmod(0o755)
    real = mb.borg_environment
    monkeypatch.setattr(mb, "borg_environment", lambda spec: real(spec) | {"BORG_RSH": str(ssh)})
    spec = component(tmp_path, remote={"host": "backup.invalid", "port": 22, "user": "monstack-backup",
                                       "identity": "/nonexistent", "known_hosts": "/nonexistent", "path": str(own)})
    (Path(spec["data_dir"]) / "index").write_text("state only this host may read " * 10)
    return spec


def test_each_run_lands_on_the_backup_host_encrypted_and_read_back(remote_spec, tmp_path):
    assert mb.run(remote_spec) == 0
    assert mb.run(remote_spec) == 0
    names = mb.archive_names(remote_spec)
    assert mb.archive_names(remote_spec, remote=True) == names and len(names) == 2
    assert mb.verify(remote_spec, names[-1], remote=True)["component"] == "thing"
    assert 'monstack_backup_last_copy_success{backup="thing"} 1' in (
        tmp_path / "textfile/monstack_backup_thing.prom").read_text()
    for path in (tmp_path / "store").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"only this host may read" not in content and PASSPHRASE.encode() not in content, path


def test_the_key_reaches_no_other_repository_on_the_backup_host(remote_spec, tmp_path):
    other = tmp_path / "store/repos/host-2"
    made = borg(remote_spec | {"remote": None}, "init", "--encryption", "repokey-blake2", str(other))
    assert made.returncode == 0, made.stderr
    asked = borg(remote_spec, "list", f"ssh://monstack-backup@backup.invalid:22{other}")
    assert asked.returncode != 0 and "not allowed" in asked.stderr, asked.stderr


def test_the_key_can_neither_delete_nor_rewrite_the_history_it_wrote(remote_spec, tmp_path):
    """Append-only: what the client removes is only marked removed; every segment stays as it was, and
    the backup host's operator can roll back to any earlier transaction."""
    assert mb.run(remote_spec) == 0
    assert mb.run(remote_spec) == 0
    repo = Path(remote_spec["remote"]["path"])
    before = segments(repo)
    url = mb.remote_repository(remote_spec)
    for attempt in (["delete", f"{url}::{mb.archive_names(remote_spec)[0]}"],
                    ["prune", "--keep-last", "1", url], ["compact", url]):
        borg(remote_spec, *attempt)
    after = segments(repo)
    assert {name: size for name, size in after.items() if name in before} == before, "a segment was rewritten"
    assert set(before) <= set(after), "a segment was removed"
    assert "append_only" not in (repo / "config").read_text() or "append_only = 0" in (repo / "config").read_text()


def test_a_backup_host_that_cannot_be_reached_fails_the_run_and_keeps_the_local_archive(remote_spec, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(mb, "borg_environment", lambda spec, real=mb.borg_environment: real(spec) | {
        "BORG_RSH": shlex.join(["sh", "-c",
                                "echo 'ssh: connect to host backup.invalid port 22: refused' >&2; exit 255"])})
    assert mb.run(remote_spec) == 1
    metrics = (tmp_path / "textfile/monstack_backup_thing.prom").read_text()
    assert 'monstack_backup_last_copy_success{backup="thing"} 0' in metrics
    assert len(mb.archive_names(remote_spec)) == 1


# --- VictoriaMetrics: its snapshot API, vmbackup and vmrestore (Debian's, make .venv/bin/vmbackup) ------------

settings_filters = load_module("plugins/filter/settings.py", "monstack_settings_for_backup")
VM_PASSWORD = "it's $ecret `and` \"quoted\""  # every character the environment file encodes


def vm_tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    assert found, (f"{name} is missing. VictoriaMetrics's tools are not on PyPI; take them from Debian's package "
                   f"with `make .venv/bin/vmbackup` (in the repository root)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VictoriaMetrics:
    """Debian's victoria-metrics on a data directory of tmp_path, https with a CA of the test's own and the
    stack's user from an environment file written as roles/victoriametrics writes it; stopped and started
    by the restore as systemctl would."""

    def __init__(self, tmp_path: Path, data_dir: Path):
        self.data_dir, self.port, self.process = data_dir, _free_port(), None
        self.ca = tmp_path / "ca.crt"
        key = tmp_path / "host.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(self.ca)], check=True, capture_output=True)
        self.secrets = tmp_path / "secrets.env"
        self.secrets.write_text("# written by the role\n"
                                + settings_filters.environment_file_line("httpAuth_username", "prometheus") + "\n"
                                + settings_filters.environment_file_line("httpAuth_password", VM_PASSWORD) + "\n")
        self.args = [vm_tool("victoria-metrics"), f"-storageDataPath={data_dir}", "-retentionPeriod=100y",
                     f"-httpListenAddr=127.0.0.1:{self.port}", "-tls", f"-tlsCertFile={self.ca}",
                     f"-tlsKeyFile={key}", "-loggerLevel=ERROR", "-httpAuth.username=prometheus"]
        self.log = tmp_path / "victoria-metrics.log"

    def start(self) -> None:
        # The password from the environment, as systemd hands it over (-envflag.enable).
        env = dict(os.environ, httpAuth_password=VM_PASSWORD)
        with self.log.open("a") as log:
            self.process = subprocess.Popen([*self.args, "-envflag.enable"], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.log.read_text()[-2000:])
            try:
                self.api("/health", raw=True)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"victoria-metrics did not answer: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def api(self, path: str, data: bytes | None = None, raw: bool = False):
        context = ssl.create_default_context(cafile=str(self.ca))
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", data=data)
        request.add_header("Authorization", "Basic " + base64.b64encode(f"prometheus:{VM_PASSWORD}".encode()).decode())
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            body = answer.read()
        return body if raw else json.loads(body)

    def series(self) -> list[str]:
        body = self.api("/api/v1/export", urllib.parse.urlencode({"match[]": '{__name__=~"bench_.*"}'}).encode(),
                        raw=True)
        return sorted(json.loads(line)["metric"]["n"] for line in body.decode().splitlines())

    def snapshots(self) -> list[str]:
        return self.api("/snapshot/list")["snapshots"]


@pytest.fixture
def victoriametrics(tmp_path, monkeypatch):
    """A vmbackup component on a running VictoriaMetrics holding three series; systemctl stops and starts it."""
    spec = component(tmp_path, "vmbackup", vmbackup=vm_tool("vmbackup"), vmrestore=vm_tool("vmrestore"))
    server = VictoriaMetrics(tmp_path, Path(spec["data_dir"]))
    spec |= {"secrets_file": str(server.secrets), "service": "victoriametrics",
             "settings": {"port": server.port, "listen_address": f"127.0.0.1:{server.port}",
                          "ca_file": str(server.ca)}}
    server.start()
    now = int(time.time())
    lines = "".join(f'bench_series{{n="{n}"}} {n} {(now - 60) * 1000}\n' for n in (1, 2, 3))
    server.api("/api/v1/import/prometheus", lines.encode(), raw=True)
    server.api("/internal/force_flush", raw=True)
    calls = []

    def systemctl(action, service):
        calls.append((action, service))
        {"stop": server.stop, "start": server.start}[action]()
        return True

    monkeypatch.setattr(mb, "_systemctl", systemctl)
    monkeypatch.setattr(mb, "_service_state", lambda service: ("active", "0"))
    yield spec, server, calls
    server.stop()


@as_root
def test_victoriametrics_is_backed_up_through_a_snapshot_and_vmbackup_and_restored_by_vmrestore(victoriametrics,
                                                                                              monkeypatch):
    spec, server, calls = victoriametrics
    argv = []
    real_run = mb.subprocess.run
    monkeypatch.setattr(mb.subprocess, "run", lambda args, **kw: argv.append(args) or real_run(args, **kw))
    assert server.series() == ["1", "2", "3"]
    assert mb.run(spec) == 0
    assert server.snapshots() == [], "the run left its snapshot behind"
    (name,) = mb.archive_names(spec)
    names = members(spec, name)
    assert "data/backup_complete.ignore" in names and any(n.startswith("data/indexdb/") for n in names), names
    vm_calls = [args for args in argv if args[0] in (spec["vmbackup"], spec["vmrestore"])]
    assert vm_calls and not [args for args in argv if any(VM_PASSWORD in str(arg) for arg in args)]

    # The disk is lost: the server runs again on an empty data directory.
    server.stop()
    shutil.rmtree(spec["data_dir"])
    Path(spec["data_dir"]).mkdir()
    server.start()
    assert server.series() == []
    calls.clear()
    assert mb.restore(spec, name) == 0
    assert calls == [("stop", "victoriametrics"), ("start", "victoriametrics")]
    assert server.series() == ["1", "2", "3"]
    assert [args[0] for args in argv].count(spec["vmrestore"]) == 1
    data = Path(spec["data_dir"])
    assert stat.S_IMODE(data.stat().st_mode) == 0o750 and not list(data.rglob("restore-in-progress"))
    [aside] = data.parent.glob("data.pre-restore-*")
    assert not (data.parent / ".data.restore").exists()
    # A second run is incremental: vmbackup's staging copy is brought up to date, and archived again.
    assert mb.run(spec) == 0 and len(mb.archive_names(spec)) == 2 and server.snapshots() == []
    assert aside.is_dir()


def test_a_failed_vmbackup_fails_the_run_and_deletes_its_snapshot(victoriametrics, tmp_path):
    spec, server, _ = victoriametrics
    spec["vmbackup"] = "/bin/false"
    assert mb.run(spec) == 1
    assert server.snapshots() == [] and mb.archive_names(spec) == []
    assert metric(tmp_path, "monstack_backup_last_run_success") == "0"


def test_the_snapshot_of_a_killed_run_is_deleted_by_the_next(victoriametrics):
    spec, server, _ = victoriametrics
    left = server.api("/snapshot/create")["snapshot"]
    mb.component_dir(spec).mkdir(parents=True)
    (mb.component_dir(spec) / mb.VM_SNAPSHOT_RECORD).write_text(left + "\n")
    assert mb.run(spec) == 0
    assert server.snapshots() == []


def test_a_wrong_password_or_an_unknown_ca_fails_the_run_saying_why(victoriametrics, tmp_path, capfd):
    spec, server, _ = victoriametrics
    server.secrets.write_text(settings_filters.environment_file_line("httpAuth_username", "prometheus") + "\n"
                              + settings_filters.environment_file_line("httpAuth_password", "wrong") + "\n")
    assert mb.run(spec) == 1
    assert "HTTP 401" in capfd.readouterr().err
    spec["settings"]["ca_file"] = str(tmp_path / "passphrase")  # not a CA
    assert mb.run(spec) == 1
    assert server.snapshots() == [] and mb.archive_names(spec) == []


@as_root
def test_vmrestore_is_refused_where_a_user_other_than_root_could_swap_its_directory(victoriametrics):
    spec, server, _ = victoriametrics
    assert mb.run(spec) == 0
    parent = Path(spec["data_dir"]).parent
    os.chmod(parent, 0o777)
    try:
        with pytest.raises(mb.BackupError, match="not root's alone.*nothing was changed"):
            mb.restore(spec, mb.archive_names(spec)[-1])
    finally:
        os.chmod(parent, 0o700)
    assert server.series() == ["1", "2", "3"]


@pytest.mark.parametrize("value", ["plain", "it's", 'a "b" $c `d` \\e', ""])
def test_the_environment_file_is_read_back_as_the_roles_write_it(tmp_path, value):
    path = tmp_path / "secrets.env"
    path.write_text(f"# comment\n\n{settings_filters.environment_file_line('httpAuth_password', value)}\n")
    assert mb.read_environment_file(path) == {"httpAuth_password": value}
    path.write_text("httpAuth_password=unquoted\n")
    with pytest.raises(mb.BackupError, match="line 1"):
        mb.read_environment_file(path)


@pytest.mark.parametrize(("listen", "ca_file", "url"), [
    ("0.0.0.0:8428", "/ca.crt", "https://127.0.0.1:8428"), (None, "", "http://127.0.0.1:8428"),
    ("[::]:8428", "/ca.crt", "https://[::1]:8428"), ("10.0.0.5:8428", "/ca.crt", "https://10.0.0.5:8428")])
def test_the_server_is_reached_where_it_listens(listen, ca_file, url):
    spec = {"settings": {"port": 8428, "listen_address": listen, "ca_file": ca_file}}
    assert mb._vm_base_url(spec) == url


@pytest.mark.parametrize(("listen", "allowed"), [(None, "localhost"), ("10.0.0.5:8428", "localhost 10.0.0.5")])
def test_the_backup_unit_of_victoriametrics_may_reach_where_its_server_listens_and_no_further(tmp_path, listen,
                                                                                             allowed):
    """The drop-in (templates/vmbackup.conf.j2) as the role renders it: loopback, plus the one address
    victoriametrics_listen_address names, which the run asks (test_the_server_is_reached_where_it_listens)."""
    extra = {"render_role": "backup", "render_templates": ["vmbackup.conf"], "render_out": str(tmp_path / "files")}
    if listen:
        extra["victoriametrics_listen_address"] = listen
    run_playbook(REPO_ROOT / "tests" / "render" / "role_templates.yml", extra, home=tmp_path,
                 inventory=write_inventory(tmp_path, {"victoriametrics": ["lts1"]}, local="lts1"))
    lines = (tmp_path / "files" / "vmbackup.conf").read_text().splitlines()
    assert [line for line in lines if line.startswith("IPAddress")] == ["IPAddressDeny=any", f"IPAddressAllow={allowed}"]


# vmbackup/vmrestore 1.79 may panic as they exit after their work (their metrics server stopped before it
# registered): a stand-in exits that way, with or without the tool's own mark of finished work.
@pytest.mark.parametrize(("marked", "accepted"), [(True, True), (False, False)])
def test_a_vmbackup_exit_panic_counts_only_with_its_mark_of_a_whole_backup(tmp_path, marked, accepted):
    staging = tmp_path / "vmbackup"
    staging.mkdir()
    tool = tmp_path / "vmbackup-tool"
    mark = f"touch {shlex.quote(str(staging / mb.VMBACKUP_COMPLETE_MARK))}; " if marked else ""
    tool.write_text(f"#!/bin/sh\n{mark}echo 'panic: {mb.VM_EXIT_PANIC} \"127.0.0.1:0\"' >&2; exit 2\n")
    tool.chmod(0o755)
    finished = mb._vmbackup_complete(staging)
    if accepted:
        mb._vm_tool({"vmbackup": str(tool)}, "vmbackup", finished=finished)
    else:
        with pytest.raises(mb.BackupError, match="vmbackup failed"):
            mb._vm_tool({"vmbackup": str(tool)}, "vmbackup", finished=finished)


def test_a_vmrestore_exit_panic_counts_only_once_its_progress_mark_is_gone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / mb.VMRESTORE_PROGRESS_MARK).touch()
    tool = tmp_path / "vmrestore-tool"
    tool.write_text(f"#!/bin/sh\necho 'panic: {mb.VM_EXIT_PANIC}' >&2; exit 2\n")
    tool.chmod(0o755)
    with pytest.raises(mb.BackupError, match="vmrestore failed"):
        mb._vm_tool({"vmrestore": str(tool)}, "vmrestore", finished=mb._vmrestore_complete(data))
    (data / mb.VMRESTORE_PROGRESS_MARK).unlink()
    mb._vm_tool({"vmrestore": str(tool)}, "vmrestore", finished=mb._vmrestore_complete(data))
