"""No secret of the metrics core reaches ansible-playbook's output, at any verbosity: the scrape
password (which the scrape jobs carried into a fact), a webhook URL's token, the watchdog URL and a
remote_write password, each new to this run so that finding it can only mean this output printed it."""

from __future__ import annotations

import json
import secrets

from bench_checks import INVENTORY, run_playbook

testinfra_hosts = [f"ansible://m-prom?ansible_inventory={INVENTORY}"]


def test_a_very_verbose_dry_run_shows_no_secret_and_copies_no_module():
    token = secrets.token_hex(8)
    given = {
        "monitoring_scrape_password": "scrape-" + token,
        "alertmanager_webhook_receivers": [{"url": f"http://m-prom:9999/hook?token=hook-{token}",
                                            "severities": ["critical", "warning", "info"]}],
        "alertmanager_watchdog_url": f"http://m-prom:9999/watchdog/watch-{token}",
        "prometheus_remote_write": [{"url": "https://m-prom:8428/api/v1/write",
                                     "basic_auth": {"username": "prometheus", "password": "write-" + token}}],
    }
    run = run_playbook("site.yml", "-vvv", "--check", "--diff", "-e", json.dumps(given))
    assert run.rc == 0, run.tail()
    assert "remote-write-0-password" in run.output, "the dry run did not reach the remote_write secret file"
    assert "alertmanager.yml" in run.output, "the dry run did not reach alertmanager.yml"
    for name in ("scrape", "hook", "watch", "write"):
        assert f"{name}-{token}" not in run.output, f"the {name} secret is in the output of ansible-playbook -vvv"
    # The same run shows how modules reach the hosts: over SSH with pipelining, the module goes to
    # the remote Python's stdin, so no module file is ever put on a host (ansible.cfg, pipelining).
    assert "SSH: EXEC ssh" in run.output, "the dry run did not go over SSH"
    put = [line for line in run.output.splitlines() if "PUT " in line and "AnsiballZ_" in line]
    assert not put, f"modules were copied to the hosts, so pipelining is off: {put[:3]}"
