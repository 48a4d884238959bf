"""What an operator does with the play itself: dry-run it, verbosely too (bad input: test_bad_input.py)."""

import json
import secrets

from bench_checks import INVENTORY, assert_dry_run_changes_nothing, run_playbook

# These tests drive ansible-playbook themselves; they run once, not once per host.
testinfra_hosts = ["ansible://ne-trixie?ansible_inventory=" + INVENTORY]


def test_dry_run_of_converged_hosts_reports_no_change():
    assert_dry_run_changes_nothing()


def test_a_verbose_dry_run_never_shows_the_scrape_password():
    # A password of this run's own, so that finding it can only mean this output printed it.
    password = "never-shown-" + secrets.token_hex(12)
    run = run_playbook("site.yml", "-v", "--check", "--diff",
                       "-e", json.dumps({"monitoring_scrape_password": password}), limit="ne-trixie")
    assert run.rc == 0, run.tail()
    assert "Complete the daemon settings of node_exporter" in run.output, run.tail()
    assert password not in run.output, "the scrape password is in the output of ansible-playbook -v"
