"""Backups that restore: Prometheus's series and an Alertmanager silence survive the loss of their data.

The tests run in order: a backup is taken by hand, checked, copied off-host; a damaged or missing
archive is refused with the data left alone; then each data directory is destroyed and restored.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
from bench_checks import (CURL, assert_refused_before_any_change, bench_host, hosts, http_status, journal,
                          prometheus_query, run_playbook, scrape_credentials, unit_exposure, wait_until)

testinfra_hosts = hosts("b-mon")

PROMETHEUS = "https://127.0.0.1:9090"
ALERTMANAGER = "https://127.0.0.1:9093"
BACKUP_DIR = "/var/backups/monstack"
COMPONENTS = ("prometheus", "alertmanager")


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
        "createdBy": "molecule", "comment": "must survive a restore",
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
    run = run_playbook("site.yml", "--check", "--diff")
    assert run.rc == 0, run.tail()
    assert {name: counts["changed"] for name, counts in run.recap().items()} == {"b-mon": 0, "b-store": 0}, run.tail()


def test_a_schedule_only_systemd_can_judge_fails_at_validation_before_anything_changes(host):
    # The other bad settings are in the bad-input corpus (tests/bad_input.yml, test_bad_input.py).
    assert_refused_before_any_change(host, {"backup_on_calendar": "every day at two"}, "failed to validate",
                                     limit="b-mon", playbook="playbooks/backup.yml")


@pytest.mark.parametrize("component", COMPONENTS)
def test_backup_unit_is_hardened(host, component):
    exposure, report = unit_exposure(host, f"monstack-backup@{component}.service")
    assert exposure <= 2.0, report


@pytest.mark.parametrize("component", COMPONENTS)
def test_archives_are_readable_by_root_only(host, before_backup, component):
    directory = host.file(f"{BACKUP_DIR}/{component}")
    assert (directory.user, directory.mode) == ("root", 0o700)
    archive = newest_archive(host, component)
    for path in (archive, archive + ".sha256"):
        assert (host.file(path).user, host.file(path).mode) == ("root", 0o600), path
    assert host.file(BACKUP_DIR).mode == 0o700


@pytest.mark.parametrize("component", COMPONENTS)
def test_archive_is_copied_to_the_backup_host(host, before_backup, component):
    archive = newest_archive(host, component)
    name = archive.rsplit("/", 1)[1]
    store = bench_host("b-store")
    copy = f"/srv/monstack-backups/archives/b-mon/{component}/{name}"
    assert store.file(copy).exists, store.run(f"ls -lR /srv/monstack-backups/archives").stdout
    assert store.check_output(f"sha256sum {copy}").split()[0] == host.check_output(f"sha256sum {archive}").split()[0]


def test_backup_host_key_allows_sftp_only(host, before_backup):
    result = host.run("ssh -i /etc/monstack/backup/ssh/id_ed25519 -o BatchMode=yes -o IdentitiesOnly=yes "
                      "-o UserKnownHostsFile=/etc/monstack/backup/ssh/known_hosts -o ConnectTimeout=5 "
                      "-o ServerAliveInterval=5 -o ServerAliveCountMax=2 "
                      "monstack-backup@b-store id </dev/null")
    assert "uid=" not in result.stdout, "the backup key opened a shell on the backup host"


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
    ("truncate -s 100 {copy}", "is corrupt"),
    ("printf garbage | dd of={copy} bs=1 seek=2000 conv=notrunc status=none", "is corrupt"),
    ("rm {copy}", "does not exist"),
])
def test_damaged_or_missing_archive_is_refused_and_data_kept(host, before_backup, damage, message):
    archive = newest_archive(host, "prometheus")
    copy = archive.replace(".tar.gz", "-damaged.tar.gz")
    host.run_expect([0], f"cp -p {archive} {copy} && cp -p {archive}.sha256 {copy}.sha256")
    host.run_expect([0], damage.format(copy=copy))
    pid = host.check_output("systemctl show -p MainPID --value prometheus")
    inode = host.check_output("stat -c %i /var/lib/prometheus/data")
    try:
        run = restore("prometheus", restore_archive=copy)
    finally:
        host.run(f"rm -f {copy} {copy}.sha256")
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
    """A backup directory on a 64 KiB tmpfs that already holds an Alertmanager archive."""
    small, config = "/mnt/monstack-small-disk", "/etc/monstack/backup/small-disk.json"
    components = json.loads(host.file("/etc/monstack/backup/components.json").content_string)
    for spec in components.values():
        spec.update(backup_dir=small, textfile_dir=f"{small}/metrics", remote=None, min_free_mb=0)
    kept = newest_archive(host, "alertmanager")
    env = f"MONSTACK_BACKUP_CONFIG={config}"
    host.run_expect([0], f"mkdir -p {small} && mount -t tmpfs -o size=64k tmpfs {small} && "
                         f"mkdir -p {small}/alertmanager {small}/metrics && "
                         f"cp -p {kept} {kept}.sha256 {small}/alertmanager/")
    try:
        host.run_expect([0], f"umask 077 && printf %s {shlex.quote(json.dumps(components))} > {config}")
        result = host.run(f"{env} /usr/local/sbin/monstack-backup run prometheus")
        assert result.rc != 0, "a backup that cannot fit claimed success"
        metrics = host.file(f"{small}/metrics/monstack_backup_prometheus.prom").content_string
        assert 'monstack_backup_last_run_space_short{backup="prometheus"} 1' in metrics, metrics
        assert 'monstack_backup_last_run_success{backup="prometheus"} 0' in metrics, metrics
        assert host.run(f"ls -A {small}/prometheus | grep -v '^.lock$'").stdout == "", "a partial file was left"
        name = kept.rsplit("/", 1)[1]
        host.run_expect([0], f"{env} /usr/local/sbin/monstack-backup verify alertmanager --archive {name}")
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

    run = restore("alertmanager")
    assert run.rc == 0, run.tail()
    assert before_backup["silence"] in silence_ids(host)


def test_restore_needs_a_host_and_a_component(host):
    run = run_playbook("playbooks/restore.yml", extra_vars={"restore_component": "prometheus"})
    assert run.rc != 0 and "restore_host" in run.output, run.tail()
    run = restore("grafana")
    assert run.rc != 0 and "must be in the component's group" in run.output, run.tail()
