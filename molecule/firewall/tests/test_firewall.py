"""The firewall as an operator relies on it: an exporter answers the Prometheus host and nobody else,
a change of the prometheus group moves the access with it, the rules survive a restart of the host,
switching the firewall off removes exactly its table, and bad input fails before anything is loaded,
leaving the old rules in force."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from bench_checks import INVENTORY, bench_host, run_playbook, wait_until

testinfra_hosts = [f"ansible://f-web?ansible_inventory={INVENTORY}"]

CONNECT_SECONDS = 3  # a dropped SYN is retried; three seconds tell "dropped" from "answered"
RULES = "nft list table inet monstack_firewall"


def reaches(source: str, target: str, port: int) -> bool:
    """Whether `source` opens a TCP connection to target:port, within CONNECT_SECONDS."""
    result = bench_host(source).run(f"timeout {CONNECT_SECONDS} bash -c 'exec 3<>/dev/tcp/{target}/{port}'")
    return result.rc == 0


def test_node_exporter_answers_the_prometheus_host_and_no_other(host):
    assert reaches("f-mon", "f-web", 9100), "the Prometheus host cannot reach node_exporter"
    assert not reaches("f-other", "f-web", 9100), "a host outside the prometheus group reaches node_exporter"


def test_ssh_port_and_loopback_stay_open(host):
    assert host.run("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9100'").rc == 0
    assert "tcp dport 22 accept" in host.check_output(RULES)


def test_a_port_nobody_opened_is_dropped(host):
    assert "policy drop" in host.check_output(RULES)
    # Something listens, so only the firewall can keep f-other out.
    host.run("systemctl is-active bench-listener || systemd-run --unit bench-listener python3 -m http.server 9999")
    assert wait_until(lambda: host.run("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999'").rc == 0,
                      timeout=20, interval=1, what="the bench listener")
    assert not reaches("f-other", "f-web", 9999), "a port nobody opened is reachable"


def regrouped_inventory(tmp_path: Path) -> str:
    """The scenario's inventory with f-other in the prometheus group instead of f-mon."""
    data = yaml.safe_load(Path(INVENTORY).read_text())
    # Molecule writes groups at the top level or under all.children.
    groups = data["all"].get("children", data)
    groups["prometheus"]["hosts"] = {"f-other": None}
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_moving_the_prometheus_group_moves_the_access(host, tmp_path):
    inventory = regrouped_inventory(tmp_path)
    moved = subprocess.run(["ansible-playbook", "-i", inventory, "site.yml", "--tags", "firewall"],
                           cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=600,
                           check=False)
    try:
        assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-2000:]
        assert reaches("f-other", "f-web", 9100), "the host added to the prometheus group has no access"
        assert not reaches("f-mon", "f-web", 9100), "the host removed from the prometheus group kept its access"
    finally:
        back = run_playbook("site.yml", "--tags", "firewall")
        assert back.rc == 0, back.tail()
    assert reaches("f-mon", "f-web", 9100) and not reaches("f-other", "f-web", 9100)


def test_the_rules_survive_a_restart_of_the_host(host):
    before = host.check_output(RULES)
    subprocess.run(["docker", "restart", "f-web"], check=True, capture_output=True, timeout=120)
    web = bench_host("f-web")

    def booted():
        state = web.run("systemctl is-system-running").stdout.strip()
        return state if state in ("running", "degraded") else None
    wait_until(booted, timeout=90, interval=2, what="f-web booted")
    assert web.check_output(RULES) == before
    assert wait_until(lambda: reaches("f-mon", "f-web", 9100), timeout=60, interval=2, what="node_exporter back")
    assert not reaches("f-other", "f-web", 9100)


# Bad input (an invalid network, a port out of range, an unknown protocol, a rate nftables cannot
# read, a comment with a rule in it): the corpus, tests/bad_input.yml, run by test_bad_input.py, which
# also compares the loaded ruleset before and after.


def test_switched_off_the_table_goes_and_a_rerun_changes_nothing_then_on_again_it_is_back(host):
    try:
        off = run_playbook("site.yml", "--tags", "firewall", "-e", '{"firewall_enabled": false}', limit="f-web")
        assert off.rc == 0 and off.recap()["f-web"]["changed"] > 0, off.tail()
        assert host.run(RULES).rc != 0, "the role's table is still loaded"
        assert not host.file("/etc/monstack/firewall.nft").exists
        assert host.service("monstack-firewall.service").is_enabled is False
        assert reaches("f-other", "f-web", 9100), "switched off, the firewall still drops f-other"
        again = run_playbook("site.yml", "--tags", "firewall", "-e", '{"firewall_enabled": false}', limit="f-web")
        assert again.rc == 0 and again.recap()["f-web"]["changed"] == 0, again.tail()
    finally:
        back = run_playbook("site.yml", "--tags", "firewall", limit="f-web")
        assert back.rc == 0, back.tail()
    assert "policy drop" in host.check_output(RULES)
    assert reaches("f-mon", "f-web", 9100) and not reaches("f-other", "f-web", 9100)


def test_a_dry_run_of_the_converged_hosts_changes_nothing():
    run = run_playbook("site.yml", "--check", "--diff")
    assert run.rc == 0, run.tail()
    assert all(counts["changed"] == 0 for counts in run.recap().values()), run.recap()
