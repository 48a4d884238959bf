"""What an operator does with the play itself: dry-run it (verbosely too), and feed it bad input."""

import json
import secrets

import pytest
import testinfra

from bench_checks import INVENTORY, ChangeWatch, run_playbook

# These tests drive ansible-playbook themselves; they run once, not once per host.
testinfra_hosts = ["ansible://ne-trixie?ansible_inventory=" + INVENTORY]


def test_dry_run_of_converged_hosts_reports_no_change():
    run = run_playbook("site.yml", "--check", "--diff")
    recap = run.recap()
    assert run.rc == 0, run.tail()
    assert recap, run.tail()
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap.values()), recap


def test_a_verbose_dry_run_never_shows_the_scrape_password():
    # A password of this run's own, so that finding it can only mean this output printed it.
    password = "never-shown-" + secrets.token_hex(12)
    run = run_playbook("site.yml", "-v", "--check", "--diff",
                       "-e", json.dumps({"monitoring_scrape_password": password}), limit="ne-trixie")
    assert run.rc == 0, run.tail()
    assert "Complete the daemon settings of node_exporter" in run.output, run.tail()
    assert password not in run.output, "the scrape password is in the output of ansible-playbook -v"


BAD_INPUT = [
    pytest.param("ne-trixie", {"node_exporter_port": "abc"}, "node_exporter_port", id="port-abc"),
    pytest.param("ne-trixie", {"node_exporter_install_method": "tarball"}, "node_exporter_install_method",
                 id="unknown-install-method"),
    pytest.param("ne-trixie", {"node_exporter_listen_address": "0.0.0.0"}, "node_exporter_listen_address",
                 id="listen-address-without-port"),
    pytest.param("ne-archive", {"node_exporter_archive_sha256": "0" * 64}, "was expected",
                 id="wrong-archive-checksum"),
]


@pytest.mark.parametrize(("target", "extra_vars", "message"), BAD_INPUT)
def test_bad_input_fails_before_anything_changes(target, extra_vars, message):
    host = testinfra.get_host(f"ansible://{target}?ansible_inventory={INVENTORY}")
    pid_before = host.check_output("systemctl show -p MainPID --value node_exporter")
    watch = ChangeWatch(host)
    watch.mark()
    run = run_playbook("site.yml", extra_vars=extra_vars, limit=target)
    assert run.rc != 0, f"the play accepted {extra_vars}:\n{run.tail()}"
    assert message in run.output, f"the failure does not name {message!r}:\n{run.tail()}"
    assert watch.changed_files() == [], "the failed play changed files on the host"
    assert host.check_output("systemctl show -p MainPID --value node_exporter") == pid_before, \
        "node_exporter was restarted by a play that failed its input checks"
