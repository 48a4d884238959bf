"""The log shipper on every host, as an operator checks it: Alloy on l-loki and Promtail on l-app (both
bench stand-ins, tools/log_standin), each running as its own non-root user, with no capability, under
the hardened unit, answering on loopback only; and that user can read every log file its rendered
configuration names, and the journal, through group membership alone, and the host key it presents
to Loki through monstack-tls.

The stand-ins read and send no logs: that the real shippers parse these files is checked against
upstream's references in tests/unit/test_log_configs.py (README, "What is verified, and how")."""

from __future__ import annotations

import re
import shlex

import yaml
from bench_checks import bench_host, hosts, http_status, journal, unit_exposure

testinfra_hosts = hosts("all")

SHIPPERS = {"l-loki": ("alloy", "/etc/alloy/config.alloy", "http://127.0.0.1:12345/-/ready"),
            "l-app": ("promtail", "/etc/promtail/promtail.yml", "http://127.0.0.1:9080/ready")}


def _shipper(host):
    return SHIPPERS[host.backend.get_hostname()]


def _configured_paths(host) -> list[str]:
    """Every file path (glob) the rendered configuration ships."""
    kind, config, _ = _shipper(host)
    text = host.check_output(f"cat {config}")
    if kind == "alloy":
        return re.findall(r'"__path__" = "([^"]+)"', text)
    return [static["labels"]["__path__"] for job in yaml.safe_load(text)["scrape_configs"]
            for static in job.get("static_configs", [])]


def test_the_shipper_runs_as_its_own_non_root_user_without_capabilities(host):
    kind, _, _ = _shipper(host)
    pid = host.check_output(f"systemctl show -p MainPID --value {kind}")
    assert pid != "0", journal(host, kind)
    assert host.check_output(f"ps -o user= -p {pid}") == kind
    status = host.check_output(f"cat /proc/{pid}/status")
    assert "CapEff:\t0000000000000000" in status
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) != "0"


def test_the_shipper_reads_logs_through_groups_not_root(host):
    kind, _, _ = _shipper(host)
    groups = host.check_output(f"id -nG {kind}").split()
    assert {"adm", "systemd-journal"} <= set(groups), groups
    unit = host.check_output(f"systemctl show -p SupplementaryGroups --value {kind}").split()
    assert {"adm", "systemd-journal"} <= set(unit), unit


def test_the_shipper_unit_is_hardened(host):
    kind, _, _ = _shipper(host)
    exposure, report = unit_exposure(host, f"{kind}.service")
    print(f"systemd-analyze security {kind}.service: {exposure}")
    assert exposure <= 2.0, report


def test_the_shipper_answers_on_loopback_only(host):
    kind, _, ready = _shipper(host)
    assert http_status(host, ready) == 200, journal(host, kind)
    port = ready.split(":")[2].split("/")[0]
    other = bench_host("l-app" if host.backend.get_hostname() == "l-loki" else "l-loki")
    assert http_status(other, f"http://{host.backend.get_hostname()}:{port}/", max_time=3) == 0


def test_the_expected_sources_are_configured(host):
    paths = _configured_paths(host)
    if host.backend.get_hostname() == "l-app":
        assert paths == ["/var/log/nginx/access.log", "/var/log/nginx/error.log", "/var/log/postgresql/postgresql-*.log",
                         "/var/log/redis/redis-server*.log", "/var/log/bench-app/*.json"]
    else:
        assert paths == ["/var/log/bench-app/*.json"]
    kind, config, _ = _shipper(host)
    text = host.check_output(f"cat {config}")
    assert ("loki.source.journal" in text) if kind == "alloy" else ("journal:" in text)
    assert f'{config.rsplit("/", 1)[0]}/loki-ca.crt' in text and "https://l-loki:3100/loki/api/v1/push" in text
    # The copy is the stack's CA, readable by the shipper.
    copy = f'{config.rsplit("/", 1)[0]}/loki-ca.crt'
    assert host.check_output(f"cat {copy}") == host.check_output("cat /etc/monstack/tls/ca.crt")
    assert host.run(f"runuser -u {kind} -- head -c1 {copy}").rc == 0


def test_the_shipper_presents_the_hosts_certificate_and_reads_its_key_through_the_tls_group(host):
    """Loki admits only clients with a certificate of the stack's CA: the configuration names the host's,
    and the shipper's user reads the key as a member of monstack-tls, the one group that may."""
    kind, config, _ = _shipper(host)
    text = host.check_output(f"cat {config}")
    assert "/etc/monstack/tls/host.crt" in text and "/etc/monstack/tls/host.key" in text
    assert "monstack-tls" in host.check_output(f"id -nG {kind}").split()
    assert "monstack-tls" in host.check_output(f"systemctl show -p SupplementaryGroups --value {kind}").split()
    assert host.run(f"runuser -u {kind} -- test -r /etc/monstack/tls/host.key").rc == 0


def test_the_shipper_user_can_read_every_configured_log_file(host):
    kind, _, _ = _shipper(host)
    read, patterns = [], _configured_paths(host)
    assert patterns, "the rendered configuration names no log file: this check would read nothing"
    for pattern in patterns:
        files = host.check_output(f"sh -c 'ls -1d {pattern} 2>/dev/null || true'").split()
        assert files, f"no file matches {pattern}: the source would ship nothing"
        for path in files:
            result = host.run(f"runuser -u {kind} -- head -c1 {shlex.quote(path)}")
            assert result.rc == 0, f"{kind} cannot read {path}: {result.stderr}"
            read.append(path)
    print(f"{kind} read: {read}")


def test_the_shipper_user_can_read_the_journal(host):
    kind, _, _ = _shipper(host)
    files = host.check_output("find /var/log/journal /run/log/journal -name '*.journal' 2>/dev/null | head -n 3").split()
    assert files, "no journal file on the host"
    for path in files:
        result = host.run(f"runuser -u {kind} -- head -c1 {shlex.quote(path)}")
        assert result.rc == 0, f"{kind} cannot read {path}: {result.stderr}"
    entries = host.run(f"runuser -u {kind} -- journalctl --system -n 1 -q --no-pager -o cat")
    assert entries.rc == 0 and entries.stdout.strip(), entries.stderr


def test_a_user_outside_the_log_groups_cannot_read_them(host):
    """The reads above succeed through group membership: nobody, in no group, is refused."""
    journal = host.check_output("find /var/log/journal /run/log/journal -name '*.journal' 2>/dev/null | head -n 1")
    for path in ("/var/log/bench-app/app.json", journal):
        assert host.run(f"runuser -u nobody -- head -c1 {shlex.quote(path)}").rc != 0, path
