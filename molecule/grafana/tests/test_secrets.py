"""Where Grafana's administrator password must never be: the process list, a unit file, the journal, a
file every user can read, or the output of a dry run; and a dry run on the converged stack changes
nothing."""

from __future__ import annotations

import shlex

from bench_checks import assert_dry_run_changes_nothing, hosts, scrape_credentials

testinfra_hosts = hosts("grafana")

ADMIN_PASSWORD = "bench-grafana-Vx93kq-admin"
SEARCHED = "/etc /var /usr/local /run /tmp /root /home /srv /opt"


def test_admin_password_is_not_in_the_process_list(host):
    processes = host.check_output("ps -eo user,args")
    assert "--config=/etc/grafana/grafana.ini" in processes, "Grafana is not running: nothing to check"
    assert ADMIN_PASSWORD not in processes


def test_admin_password_is_not_in_the_unit(host):
    unit = host.check_output("systemctl cat grafana-server")
    assert "ExecStart=" in unit and ADMIN_PASSWORD not in unit


def test_admin_password_is_not_in_the_journal(host):
    host.run_expect([0], "systemctl restart grafana-server && sleep 3")
    journal = host.check_output("journalctl --no-pager -o cat")
    assert "grafana stand-in: serving https" in journal, "the journal does not even show Grafana starting"
    assert ADMIN_PASSWORD not in journal


def test_no_world_readable_file_holds_the_admin_password(host):
    found = host.run(f"grep -rlsF {shlex.quote(ADMIN_PASSWORD)} {SEARCHED}").stdout.split()
    assert found == ["/etc/grafana/secrets/admin_password"], found
    assert host.file(found[0]).mode == 0o640 and host.file(found[0]).group == "grafana"
    assert ADMIN_PASSWORD not in host.check_output("cat /etc/grafana/grafana.ini")


def test_a_dry_run_with_diff_shows_no_secret_and_changes_nothing():
    assert_dry_run_changes_nothing(secrets=(ADMIN_PASSWORD, scrape_credentials()[1]))