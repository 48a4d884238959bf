"""Backups that restore: Prometheus's series and an Alertmanager silence survive the loss of their data.

The tests run in order: a backup is taken by hand, checked, copied into b-mon's append-only repository
on b-store; a damaged repository or a missing archive is refused with the data left alone, as is a swap
that fails halfway and a full disk; then each data directory is destroyed and restored (Alertmanager's
from b-store's copy), and the copies on b-store are thinned out from the controller.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
from bench_checks import (CURL, assert_dry_run_changes_nothing, assert_refused_before_any_change, bench_host,
                          hosts, http_status, journal, pki_dir, prometheus_query, run_playbook, scrape_credentials,
                          unit_exposure, wait_until)

testinfra_hosts = hosts("b-mon")

PROMETHEUS = "https://127.0.0.1:9090"
ALERTMANAGER = "https://127.0.0.1:9093"
BACKUP_DIR = "/var/backups/monstack"
REPOSITORY = f"{BACKUP_DIR}/repository"
STORE = "/srv/monstack-backups"
COMPONENTS = ("prometheus", "alertmanager")
SILENCE_COMMENT = "must survive a restore"


def borg_as_b_mon(command: str) -> str:
    """A borg command run on b-mon with its passphrase and its key to b-store, as monstack-backup runs it."""
    return ("BORG_BASE_DIR=/tmp/borg-test BORG_PASSCOMMAND='cat /etc/monstack/backup/passphrase' "
            "BORG_RSH='ssh -i /etc/monstack/backup/ssh/id_ed25519 -o BatchMode=yes -o IdentitiesOnly=yes "
            "-o UserKnownHostsFile=/etc/monstack/backup/ssh/known_hosts -o ConnectTimeout=5' borg " + command)


def store_url(host, repository: str) -> str:
    remote = json.loads(host.file("/etc/monstack/backup/components.json").content_string)["prometheus"]["remote"]
    return f"ssh://{remote['user']}@{remote['host']}:{remote['port']}{STORE}/repos/{repository}"


def segments(store, repository: str) -> dict[str, str]:
    """The data segment files of a repository on b-store, with their sizes."""
    out = store.check_output(f"find {STORE}/repos/{repository}/data -type f -printf '%P %s\\n'")
    return dict(line.split() for line in out.splitlines())


def scraped_targets(host, at: float) -> set[tuple[str, str]]:
    """(job, instance) of every `up` series Prometheus holds at time `at`."""
    return {(s["metric"]["job"], s["metric"]["instance"]) for s in prometheus_query(host, "up", PROMETHEUS, at)}


def silence_ids(host) -> set[str]:
    out = host.check_output(f"{CURL} -sf --max-time 5 {ALERTMANAGER}/api/v2/silences")
    return {s["id"] for s in json.loads(out) if s["status"]["state"] == "active"}


def newest_archive(host, component: str) -> str:
    return host.check_output(f"/usr/local/sbin/monstack-backup list {component}").splitlines()[-1]


def restore(component: str, **extra) -> object:
    return run_playbook("playbooks/restore.yml", extra_vars={"restore_host": "b-mon",
                                                             "restore_component": component, **extra})


def destroy(host, unit: str, data_dir: str) -> None:
    """What a lost disk leaves: the daemon running again on an empty data directory."""
    host.run_expect([0], f"systemctl stop {unit} && rm -rf {data_dir}/* && systemctl start {unit}")


def wait_ready(host, url: str) -> None:
    user, password = scrape_credentials()  # Prometheus and Alertmanager want the stack's user
    wait_until(lambda: http_status(host, f"{url}/-/ready", user, password) == 200, timeout=60, what=f"{url} ready")


@pytest.fixture(scope="module")
def before_backup(host):
    """What exists when the backup is taken: Prometheus's targets at a moment, and a silence."""
    wait_until(lambda: len(scraped_targets(host, time.time())) >= 4, timeout=90, what="targets scraped")
    moment = time.time() - 5
    targets = scraped_targets(host, moment)
    silence = {
        "matchers": [{"name": "alertname", "value": "RestoreCheck", "isRegex": False}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400)),
        "createdBy": "molecule", "comment": SILENCE_COMMENT,
    }
    out = host.check_output(f"{CURL} -sf --max-time 5 -H 'Content-Type: application/json' "
                            f"-d {shlex.quote(json.dumps(silence))} {ALERTMANAGER}/api/v2/silences")
    silence_id = json.loads(out)["silenceID"]
    # Alertmanager writes its silences to disk every alertmanager_data_maintenance_interval (5s here).
    wait_until(lambda: host.run(f"grep -q {silence_id} /var/lib/alertmanager/silences").rc == 0,
               timeout=30, what="silence written to disk")
    taken = float(host.check_output("date +%s"))
    for component in COMPONENTS:
        result = host.run(f"systemctl start monstack-backup@{component}.service")
        assert result.rc == 0, journal(host, f"monstack-backup@{component}.service")
    return {"moment": moment, "targets": targets, "silence": silence_id, "taken": taken}


def test_each_component_backs_up_on_a_timer(host):
    for component in COMPONENTS:
        timer = host.service(f"monstack-backup@{component}.timer")
        assert timer.is_enabled and timer.is_running, f"monstack-backup@{component}.timer is not active"
    listing = host.check_output("systemctl list-timers --all --no-pager --no-legend 'monstack-backup@*'")
    assert len(listing.splitlines()) == 2, listing


def test_dry_run_of_the_converged_hosts_changes_nothing(host):
    assert_dry_run_changes_nothing()


def test_a_schedule_only_systemd_can_judge_fails_at_validation_before_anything_changes(host):
    # The other bad settings are in the bad-input corpus (tests/bad_input.yml, test_bad_input.py).
    assert_refused_before_any_change(host, {"backup_on_calendar": "every day at two"}, "failed to validate",
                                     limit="b-mon", playbook="playbooks/backup.yml")


@pytest.mark.parametrize("component", COMPONENTS)
def test_backup_unit_is_hardened(host, component):
    exposure, report = unit_exposure(host, f"monstack-backup@{component}.service")
    assert exposure <= 2.0, report


def test_archives_are_root_only_and_hold_no_secret_or_data_in_clear(host, before_backup):
    for path, mode in ((BACKUP_DIR, 0o700), (REPOSITORY, 0o700), ("/etc/monstack/backup/passphrase", 0o600)):
        assert (host.file(path).user, host.file(path).mode) == ("root", mode), path
    secrets = [scrape_credentials()[1], (pki_dir() / "backup-passphrase").read_text().strip(), SILENCE_COMMENT]
    store = bench_host("b-store")
    for where, place in ((host, BACKUP_DIR), (store, STORE)):
        for secret in secrets:
            found = where.run(f"grep -rlF -- {shlex.quote(secret)} {place}")
            assert found.rc == 1, f"{secret[:4]}... in clear in {found.stdout}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_archive_is_copied_to_the_backup_host(host, before_backup, component):
    archive = newest_archive(host, component)
    copies = host.check_output(f"/usr/local/sbin/monstack-backup list {component} --remote").split()
    assert copies[-1] == archive, copies
    store = bench_host("b-store")
    assert store.file(f"{STORE}/repos/b-mon").user == "monstack-backup"


def test_backup_host_key_runs_only_borg_serve_on_its_own_repository(host, before_backup):
    result = host.run("ssh -i /etc/monstack/backup/ssh/id_ed25519 -o BatchMode=yes -o IdentitiesOnly=yes "
                      "-o UserKnownHostsFile=/etc/monstack/backup/ssh/known_hosts -o ConnectTimeout=5 "
                      "-o ServerAliveInterval=5 -o ServerAliveCountMax=2 "
                      "monstack-backup@b-store id </dev/null")
    # The login worked (ssh's own failures end in 255) and the forced command ran instead of `id`: borg,
    # which answers what it makes of the request (its usage, or the connection closing).
    assert "uid=" not in result.stdout, "the backup key opened a shell on the backup host"
    assert result.rc == 0 and "borg" in (result.stdout + result.stderr).lower(), (result.rc, result.stderr)
    store = bench_host("b-store")
    store.run_expect([0], f"runuser -u monstack-backup -- env BORG_BASE_DIR=/tmp/borg-other BORG_PASSPHRASE=other "
                          f"borg init --encryption repokey-blake2 {STORE}/repos/b-other")
    asked = host.run(borg_as_b_mon(f"list {store_url(host, 'b-other')}"))
    assert asked.rc != 0 and "not allowed" in asked.stderr, asked.stderr


def test_the_key_cannot_remove_or_rewrite_what_it_wrote_on_the_backup_host(host, before_backup):
    """Tried on two archives of its own making, so the components' archives stay listed for what follows."""
    store = bench_host("b-store")
    own = store_url(host, "b-mon")
    for scratch in ("scratch-1", "scratch-2"):
        host.run_expect([0], borg_as_b_mon(f"create {own}::{scratch} /etc/hostname"))
    before = segments(store, "b-mon")
    for attempt in (f"delete {own}::scratch-1", f"prune --keep-last 1 --glob-archives 'scratch-*' {own}",
                    f"compact {own}"):
        host.run(borg_as_b_mon(attempt))
    after = segments(store, "b-mon")
    assert {name: size for name, size in after.items() if name in before} == before, "a segment was rewritten"
    # What the delete marked is back after the backup host's operator rolls the repository back (borg's
    # append-only mode): here, it is enough that nothing it wrote is gone.


@pytest.mark.parametrize("component", COMPONENTS)
def test_backup_metrics_reach_prometheus(host, before_backup, component):
    selector = f'{{backup="{component}",instance="b-mon"}}'
    # The run the fixture started, once node_exporter has been scraped after it.
    wait_until(lambda: prometheus_query(
        host, f"monstack_backup_last_success_timestamp_seconds{selector} >= {before_backup['taken']}"),
        timeout=60, what=f"the new backup of {component} in Prometheus")
    assert prometheus_query(host, f"monstack_backup_last_run_success{selector} == 1")
    size = prometheus_query(host, f"monstack_backup_last_size_bytes{selector}")
    assert float(size[0]["value"][1]) > 0, size


def test_failed_copy_is_reported_as_a_failed_run(host, before_backup):
    store = bench_host("b-store")
    store.run_expect([0], "systemctl stop ssh.socket ssh.service 2>/dev/null; systemctl stop ssh")
    try:
        result = host.run("systemctl start monstack-backup@alertmanager.service")
        assert result.rc != 0, "the backup claimed success while the backup host was down"
        metrics = host.file("/var/lib/node_exporter/textfile/monstack_backup_alertmanager.prom").content_string
        assert 'monstack_backup_last_run_success{backup="alertmanager"} 0' in metrics, metrics
        assert 'monstack_backup_last_copy_success{backup="alertmanager"} 0' in metrics, metrics
    finally:
        store.run_expect([0], "systemctl start ssh")
    host.run_expect([0], "systemctl start monstack-backup@alertmanager.service")
    metrics = host.file("/var/lib/node_exporter/textfile/monstack_backup_alertmanager.prom").content_string
    assert 'monstack_backup_last_run_success{backup="alertmanager"} 1' in metrics, metrics


@pytest.mark.parametrize(("damage", "message"), [
    ("damaged repository", "is corrupt"),
    ("missing archive", "does not exist"),
])
def test_damaged_or_missing_archive_is_refused_and_data_kept(host, before_backup, damage, message):
    pid = host.check_output("systemctl show -p MainPID --value prometheus")
    inode = host.check_output("stat -c %i /var/lib/prometheus/data")
    extra = {}
    if damage == "missing archive":
        extra["restore_archive"] = "prometheus-20000101T000000Z"
    else:  # bytes overwritten in the middle of every segment; the repository is put back afterwards
        host.run_expect([0], f"cp -a {REPOSITORY} {REPOSITORY}.saved && for segment in $(find {REPOSITORY}/data "
                             f"-type f -size +1k); do size=$(stat -c %s $segment); printf garbage%.0s $(seq 64) | "
                             f"dd of=$segment bs=1 seek=$((size / 2)) conv=notrunc status=none; done")
    try:
        run = restore("prometheus", **extra)
    finally:
        if damage == "damaged repository":
            host.run(f"rm -rf {REPOSITORY} && mv {REPOSITORY}.saved {REPOSITORY}")
    assert run.rc != 0, f"restore.yml accepted a damaged archive:\n{run.tail()}"
    assert message in run.output and "Nothing was changed" in run.output, run.tail()
    assert host.check_output("systemctl show -p MainPID --value prometheus") == pid, "Prometheus was stopped"
    assert host.check_output("stat -c %i /var/lib/prometheus/data") == inode, "the data directory was replaced"
    assert scraped_targets(host, before_backup["moment"]) == before_backup["targets"]


def test_a_restore_that_fails_mid_swap_leaves_the_data_and_the_service_running(host, before_backup):
    """A data directory that is a mount point cannot be renamed (EBUSY): the restore must put everything
    back and start the service, not leave it stopped."""
    host.run_expect([0], "mount --bind /var/lib/prometheus/data /var/lib/prometheus/data")
    try:
        run = restore("prometheus")
        assert run.rc != 0, f"restore.yml reported success although the swap failed:\n{run.tail()}"
        assert "the previous data is back in place and prometheus started" in run.output, run.tail()
        assert host.service("prometheus").is_running
        wait_ready(host, PROMETHEUS)
        assert scraped_targets(host, before_backup["moment"]) == before_backup["targets"]
        assert host.run("ls -d /var/lib/prometheus/data.pre-restore-*").rc != 0, "data was left aside"
    finally:
        host.run("umount /var/lib/prometheus/data")


def test_a_full_disk_fails_the_run_says_so_and_loses_nothing(host, before_backup):
    """A backup directory on a small tmpfs: an Alertmanager archive fits; then the disk is filled up to
    64 KiB. Prometheus's run refuses to start; told its last run added a byte, it starts, and borg meets
    the full disk. Both say so in the metrics, and the repository and the archive it held stay sound."""
    small, config = "/mnt/monstack-small-disk", "/etc/monstack/backup/small-disk.json"
    components = json.loads(host.file("/etc/monstack/backup/components.json").content_string)
    for spec in components.values():
        spec.update(backup_dir=small, textfile_dir=f"{small}/metrics", remote=None, min_free_mb=0,
                    shrink_limit_percent=0)
    program = f"MONSTACK_BACKUP_CONFIG={config} /usr/local/sbin/monstack-backup"
    metrics = f"{small}/metrics/monstack_backup_prometheus.prom"
    host.run_expect([0], f"mkdir -p {small} && mount -t tmpfs -o size=8m tmpfs {small} && mkdir {small}/metrics")
    try:
        host.run_expect([0], f"umask 077 && printf %s {shlex.quote(json.dumps(components))} > {config}")
        host.run_expect([0], f"{program} run alertmanager")
        kept = host.check_output(f"{program} list alertmanager")
        host.run_expect([0], f"avail=$(df --output=avail -B1 {small} | tail -1) && "
                             f"head -c $((avail - 65536)) /dev/zero > {small}/filler")
        for attempt in ("refused before it starts", "borg meets the full disk"):
            if attempt == "borg meets the full disk":
                host.run_expect([0], f"mkdir -p {small}/prometheus && echo '{{\"data_bytes\": 1, "
                                     f"\"added_bytes\": 1}}' > {small}/prometheus/.last-verified.json")
            result = host.run(f"{program} run prometheus")
            assert result.rc != 0, f"{attempt}: a backup that cannot fit claimed success"
            text = host.file(metrics).content_string
            assert 'monstack_backup_last_run_space_short{backup="prometheus"} 1' in text, (attempt, result.stderr)
            assert 'monstack_backup_last_run_success{backup="prometheus"} 0' in text, text
        host.run_expect([0], f"rm {small}/filler")
        assert host.check_output(f"{program} list prometheus") == ""
        assert host.check_output(f"{program} list alertmanager") == kept
        host.run_expect([0], f"{program} verify alertmanager")
    finally:
        host.run(f"umount {small}; rm -f {config}; rmdir {small}")


def test_restore_brings_prometheus_series_back(host, before_backup):
    destroy(host, "prometheus", "/var/lib/prometheus/data")
    wait_ready(host, PROMETHEUS)
    assert scraped_targets(host, before_backup["moment"]) == set(), "the series outlived their data directory"

    run = restore("prometheus")
    assert run.rc == 0, run.tail()
    assert scraped_targets(host, before_backup["moment"]) == before_backup["targets"]
    assert host.file("/var/lib/prometheus/data").user == "prometheus"


def test_a_second_restore_keeps_the_data_the_first_one_replaced(host, before_backup):
    run = restore("prometheus")
    assert run.rc == 0, run.tail()
    assert scraped_targets(host, before_backup["moment"]) == before_backup["targets"]
    kept = host.check_output("ls -d /var/lib/prometheus/data.pre-restore-*").split()
    assert len(kept) == 2, kept


def test_restore_brings_alertmanager_silence_back(host, before_backup):
    destroy(host, "alertmanager", "/var/lib/alertmanager")
    wait_ready(host, ALERTMANAGER)
    assert before_backup["silence"] not in silence_ids(host), "the silence outlived its data directory"

    run = restore("alertmanager", restore_from="remote")  # from b-store's copy, as after a lost disk
    assert run.rc == 0, run.tail()
    assert before_backup["silence"] in silence_ids(host)


def test_the_copies_on_the_backup_host_are_thinned_out_from_the_controller(host, before_backup):
    """Keep one day: one archive per component is left; the passphrase shows nowhere, even at -vvv."""
    passphrase = (pki_dir() / "backup-passphrase").read_text().strip()
    run = run_playbook("playbooks/backup-prune.yml", "-vvv", extra_vars={"backup_remote_keep_daily": 1})
    assert run.rc == 0, run.tail()
    assert passphrase not in run.output, "the passphrase appeared in the playbook's output"
    for component in COMPONENTS:
        copies = host.check_output(f"/usr/local/sbin/monstack-backup list {component} --remote").split()
        assert copies == [newest_archive(host, component)], copies
    store = bench_host("b-store")
    assert store.run("ls -d /tmp/monstack-borg-prune-*").rc != 0, "borg's state of the run was left behind"


def test_restore_needs_a_host_and_a_component(host):
    run = run_playbook("playbooks/restore.yml", extra_vars={"restore_component": "prometheus"})
    assert run.rc != 0 and "restore_host" in run.output, run.tail()
    run = restore("grafana")
    assert run.rc != 0 and "must be in the component's group" in run.output, run.tail()
