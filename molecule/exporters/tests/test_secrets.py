"""Where the exporters' credentials must never be: the process list, a unit file, the journal, a file
every user can read, or the output of a dry run. And where they must be: files only root and the
exporter read."""

from __future__ import annotations

import shlex

import pytest
import testinfra
from bench_checks import INVENTORY, assert_dry_run_changes_nothing, scrape_credentials

SECRETS = {
    "redis": "bench-redis-Zq81xv",
    "mongodb": "bench-mongo-Kp27wd",
}
# Host -> the secrets it holds (molecule.yml groups).
HOLDERS = {"x-web": ["redis", "mongodb"], "x-db": ["redis"]}
# Where a world-readable copy could end up: configuration, state, logs, temporary and home directories.
SEARCHED = "/etc /var /usr/local /run /tmp /root /home /srv /opt"

testinfra_hosts = [f"ansible://{name}?ansible_inventory={INVENTORY}" for name in sorted(HOLDERS)]


def held(host) -> list[str]:
    return [SECRETS[kind] for kind in HOLDERS[host.backend.host]]


def test_secrets_are_not_in_the_process_list(host):
    processes = host.check_output("ps -eo user,args")
    assert "redis_exporter" in processes, "the exporters are not running: nothing to check"
    for secret in held(host):
        assert secret not in processes


def test_secrets_are_not_in_any_unit_file(host):
    units = host.check_output("systemctl cat redis_exporter mongodb_exporter nginx_exporter postgres_exporter "
                              "2>/dev/null || true")
    assert "ExecStart=" in units
    for secret in held(host):
        assert secret not in units


def test_secrets_are_not_in_the_journal(host):
    # After a restart of every exporter, so their start-up and connection messages are in it.
    host.run_expect([0], "systemctl restart redis_exporter && sleep 3")
    if "mongodb" in HOLDERS[host.backend.host]:
        host.run_expect([0], "systemctl restart mongodb_exporter && sleep 2 "
                             "&& curl -s -o /dev/null --max-time 15 --cacert /etc/monstack/tls/ca.crt https://127.0.0.1:9216/metrics")
    journal = host.check_output("journalctl --no-pager -o cat")
    assert "Started redis_exporter.service" in journal or "redis_exporter" in journal, "the journal is empty"
    for secret in held(host):
        assert secret not in journal


def test_no_world_readable_file_holds_a_secret(host):
    for secret in held(host):
        found = host.run(f"grep -rlsF {shlex.quote(secret)} {SEARCHED}").stdout.split()
        assert found, "the search did not even find the exporter's own secret file"
        exposed = [path for path in found
                   if int(host.check_output(f"stat -c %a {shlex.quote(path)}"), 8) & 0o004]
        assert exposed == [], f"world-readable files hold a secret: {exposed}"


@pytest.mark.parametrize(("path", "owner", "group", "mode"), [
    ("/etc/redis_exporter/redis-password.json", "root", "redis_exporter", 0o640),
])
def test_password_files_are_readable_by_root_and_the_exporter_only(host, path, owner, group, mode):
    secret_file = host.file(path)
    assert (secret_file.user, secret_file.group, secret_file.mode) == (owner, group, mode)


def test_mongodb_uri_file_is_root_only():
    web = testinfra.get_host(f"ansible://x-web?ansible_inventory={INVENTORY}")
    env = web.file("/etc/mongodb_exporter/secrets.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert web.file("/var/log/mongodb_exporter").mode == 0o700


def test_the_scrape_password_is_only_in_prometheus_password_files():
    """The generated scrape password: bcrypt hashes in the exporters' web configs, plaintext only in
    the 0640 root:prometheus files Prometheus reads."""
    password = scrape_credentials()[1]
    for name in ("x-mon", "x-web", "x-db"):
        target = testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")
        found = target.run(f"grep -rlsF {shlex.quote(password)} {SEARCHED}").stdout.split()
        assert all(path.startswith("/etc/prometheus/secrets/") for path in found), f"{name}: {found}"
        assert password not in target.check_output("ps -eo args")
        for path in found:
            secret = target.file(path)
            assert (secret.user, secret.group, secret.mode) == ("root", "prometheus", 0o640), path


def test_a_dry_run_with_diff_shows_no_secret_and_changes_nothing():
    assert_dry_run_changes_nothing(secrets=(*SECRETS.values(), scrape_credentials()[1]))