"""The firewall as an operator relies on it, reached over SSH as an unprivileged user with sudo: an
exporter answers the Prometheus host and nobody else, a change of the prometheus group moves the access
with it, a service of the host's own is never cut off without being told to, the operator keeps SSH,
the rules survive a restart of the host, switching the firewall off removes exactly its table, and bad
input fails before anything is loaded, leaving the old rules in force."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from bench_checks import (INVENTORY, assert_dry_run_changes_nothing, assert_refused_before_any_change, bench_host,
                          run_playbook, unit_exposure, wait_until)

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


def test_a_listener_nobody_named_stops_the_play_until_it_is_opened_or_closed_on_purpose(host):
    # A service of the host's own that the ruleset would cut off: the play stops before loading,
    # naming the port, the process and the entry that keeps it open; the operator decides.
    host.run("systemctl is-active bench-listener || systemd-run --unit bench-listener python3 -m http.server 9999")
    assert wait_until(lambda: host.run("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999'").rc == 0,
                      timeout=20, interval=1, what="the bench listener")
    try:
        refused = assert_refused_before_any_change(
            host, {}, "9999/tcp is listened on by python3", limit="f-web", playbook="playbooks/firewall.yml",
            variable="firewall_rules_extra")
        assert "{port: 9999, proto: tcp, sources: ['0.0.0.0/0', '::/0'], comment: python3}" in refused.output
        closed = run_playbook("playbooks/firewall.yml", "-e", json.dumps({"firewall_ports_closed": ["9999/tcp"]}),
                              limit="f-web")
        assert closed.rc == 0, closed.tail()
        assert not reaches("f-other", "f-web", 9999), "a port closed on purpose is reachable"
        opened = run_playbook("playbooks/firewall.yml", "-e", json.dumps({"firewall_rules_extra": [
            {"port": 9999, "proto": "tcp", "sources": ["0.0.0.0/0", "::/0"], "comment": "python3"}]}), limit="f-web")
        assert opened.rc == 0, opened.tail()
        assert reaches("f-other", "f-web", 9999), "the entry the failure named does not keep the port open"
    finally:
        host.run("systemctl stop bench-listener")
        back = run_playbook("playbooks/firewall.yml", limit="f-web")
        assert back.rc == 0, back.tail()
    assert "9999" not in host.check_output(RULES)


def test_the_operator_keeps_ssh_when_the_admin_networks_leave_the_controller_out(host):
    # Administrators named on a network the controller is not in: SSH stays open to the address this
    # play connects from (read as the login user, whatever sudo does), and to no other host.
    settings = host.ansible.get_variables()
    address, key, user = settings["ansible_host"], settings["ansible_private_key_file"], settings["ansible_user"]
    try:
        run = run_playbook("playbooks/firewall.yml", "-e", json.dumps({"firewall_admin_sources": ["192.0.2.0/24"]}),
                           limit="f-web")
        assert run.rc == 0, run.tail()
        rules = host.check_output(RULES)
        assert "192.0.2.0/24" in rules and "tcp dport 22 accept" in rules
        # Every persistent connection to f-web closed: what follows is a new connection.
        for socket in Path("~/.ansible/cp").expanduser().glob("*"):
            subprocess.run(["ssh", "-O", "exit", "-S", str(socket), "unused"], capture_output=True, timeout=10,
                           check=False)
        fresh = subprocess.run(["ssh", "-i", key, "-p", "22", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", f"{user}@{address}", "true"],
                               capture_output=True, text=True, timeout=30, check=False)
        assert fresh.returncode == 0, f"a new SSH connection from the controller was refused: {fresh.stderr}"
        assert not reaches("f-other", "f-web", 22), "a host outside the admin networks reaches SSH"
    finally:
        back = run_playbook("playbooks/firewall.yml", limit="f-web")
        assert back.rc == 0, back.tail()
    assert reaches("f-other", "f-web", 22), "without admin networks SSH is open to every address again"


def test_the_firewall_unit_is_hardened(host):
    exposure, report = unit_exposure(host, "monstack-firewall.service")
    assert exposure <= 2.0, report


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
    # f-mon leaves the group while its Prometheus still listens: the firewall would cut it off, so the
    # operator says so (without it the play stops, naming 9090/tcp: a listener nobody named).
    moved = subprocess.run(["ansible-playbook", "-i", inventory, "site.yml", "--tags", "firewall",
                            "-e", json.dumps({"firewall_ports_closed": ["9090/tcp"]})],
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
        try:
            state = web.run("systemctl is-system-running").stdout.strip()
        except RuntimeError:  # the SSH server is not up yet
            return None
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
    assert_dry_run_changes_nothing()