"""Helpers shared by the testinfra tests of every molecule scenario.

They answer the questions an operator asks of a converged host - does it answer, does a rerun or a
dry run change anything, does bad input leave the host alone - and print what an operator would
look at when the answer is no. Every wait is bounded in tries and time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import testinfra
import testinfra.utils.ansible_runner

REPO = Path(__file__).resolve().parents[1]
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
PLAYBOOK_TIMEOUT = 600  # seconds; a full converge of a scenario takes well under this
# The stack's CA certificate on every host (monitoring_tls_ca_file), and curl trusting it.
CA_FILE = "/etc/monstack/tls/ca.crt"
CURL = f"curl --cacert {CA_FILE}"

_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)", re.M)


def pki_dir() -> Path:
    """The controller directory of the scenario's internal CA (monitoring_pki_dir: beside the inventory)."""
    inventory_dir = Path(INVENTORY).parent
    return inventory_dir.parent / "pki" / inventory_dir.name


def scrape_credentials() -> tuple[str, str]:
    """The user and the generated password Prometheus scrapes the exporters with."""
    return "prometheus", (pki_dir() / "scrape-password").read_text().split()[0]


def bench_host(name: str):
    """The testinfra host of one bench host of the scenario, by inventory name."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def prometheus_query(host, promql: str, url: str = "https://127.0.0.1:9090", at: float | None = None) -> list:
    """Result of an instant query (at Unix time `at`, default now), asked on `host` (the Prometheus
    host) through the stack's CA."""
    moment = f" --data-urlencode time={at:.3f}" if at is not None else ""
    out = host.check_output(f"{CURL} -sfG --max-time 5 --data-urlencode {shlex.quote('query=' + promql)}{moment} "
                            f"{url}/api/v1/query")
    return json.loads(out)["data"]["result"]


def hosts(pattern: str = "all") -> list[str]:
    """testinfra host specs for the scenario's inventory (use as module-level testinfra_hosts)."""
    return testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts(pattern)


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                for m in _RECAP.finditer(self.output)}

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_playbook(playbook: str = "site.yml", *args: str, extra_vars: dict | None = None,
                 limit: str | None = None) -> PlaybookRun:
    """Run a playbook of the repository against the scenario's hosts, as an operator would."""
    cmd = ["ansible-playbook", "-i", INVENTORY, str(REPO / playbook), *args]
    if limit:
        cmd += ["--limit", limit]
    for key, value in (extra_vars or {}).items():
        cmd += ["-e", f"{key}={value}"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=PLAYBOOK_TIMEOUT, check=False)
    return PlaybookRun(done.returncode, done.stdout + done.stderr)


class ChangeWatch:
    """Tells which files on a host changed between mark() and changed_files()."""

    # Paths that change by themselves on a running host, or with any Ansible connection.
    IGNORED = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log", "/var/cache",
               "/var/lib/apt", "/var/lib/systemd", "/root/.ansible")

    def __init__(self, host):
        self.host = host
        self.marker = "/var/tmp/.bench-change-marker"

    def mark(self) -> None:
        self.host.run_expect([0], f"touch {self.marker} && sleep 1")

    def changed_files(self) -> list[str]:
        prune = " -o ".join(f"-path {shlex.quote(p)}" for p in self.IGNORED)
        out = self.host.check_output(
            f"find / -xdev \\( {prune} \\) -prune -o -newer {self.marker} -print 2>/dev/null || true")
        return [line for line in out.splitlines() if line.strip()]


def http_status(host, url: str, user: str = "", password: str = "", cacert: str = CA_FILE,
                max_time: int = 5) -> int:
    """HTTP status of `url` fetched on `host` (0 when nothing answers or TLS fails); cacert "" trusts
    only the system's store."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(max_time)]
    if cacert:
        cmd += ["--cacert", cacert]
    if user:
        cmd += ["-u", f"{user}:{password}"]
    result = host.run(" ".join(shlex.quote(c) for c in [*cmd, url]))
    return int(result.stdout.strip() or 0)


def http_body(host, url: str, user: str = "", password: str = "", cacert: str = CA_FILE) -> str:
    cmd = ["curl", "-sf", "--max-time", "5", "--cacert", cacert]
    if user:
        cmd += ["-u", f"{user}:{password}"]
    return host.check_output(" ".join(shlex.quote(c) for c in [*cmd, url]))


def wait_until(check, timeout: float = 30, interval: float = 1, what: str = "condition"):
    """Call check() until it returns a truthy value; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last value: {last!r})")


def unit_exposure(host, unit: str) -> tuple[float, str]:
    """`systemd-analyze security` exposure of a unit, and the report to print on failure."""
    report = host.check_output(f"systemd-analyze security --no-pager {shlex.quote(unit)}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)
    assert match, f"no exposure level in:\n{report}"
    return float(match.group(1)), report


def journal(host, unit: str, lines: int = 30) -> str:
    return host.run(f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager").stdout


def assert_refused_before_any_change(host, extra_vars: dict, message: str, limit: str,
                                     playbook: str = "site.yml", paths: tuple = ("/etc/", "/usr/")) -> PlaybookRun:
    """Run `playbook` on `limit` with bad `extra_vars` and check what an operator relies on: the play
    fails, says `message`, and no file under `paths` changes on `host`. Returns the run."""
    watch = ChangeWatch(host)
    watch.mark()
    run = run_playbook(playbook, "-e", json.dumps(extra_vars), limit=limit)
    assert run.rc != 0, f"the play accepted {extra_vars}:\n{run.tail()}"
    assert message in run.output, f"the failure does not say {message!r}:\n{run.tail()}"
    changed = [path for path in watch.changed_files() if path.startswith(paths)]
    assert changed == [], f"the failed play changed files on the host: {changed}"
    return run


def assert_validation_refuses(target: str, unit: str, extra_vars: dict, config_dir: str):
    """Run site.yml on `target` with a bad value that only the daemon's own validator can catch, and
    check what an operator relies on: the play fails at validation, no file under `config_dir`
    changes, and `unit` keeps running with the same PID. Returns the host for further checks."""
    host = testinfra.get_host(f"ansible://{target}?ansible_inventory={INVENTORY}")
    pid = host.check_output(f"systemctl show -p MainPID --value {shlex.quote(unit)}")
    watch = ChangeWatch(host)
    watch.mark()
    run = run_playbook("site.yml", "-e", json.dumps(extra_vars), limit=target)
    assert run.rc != 0, f"the play accepted {extra_vars}:\n{run.tail()}"
    assert "failed to validate" in run.output, f"the play failed, but not at validation:\n{run.tail()}"
    changed = [path for path in watch.changed_files() if path.startswith(config_dir)]
    assert changed == [], f"a refused edit replaced live files: {changed}"
    assert host.check_output(f"systemctl show -p MainPID --value {shlex.quote(unit)}") == pid, \
        f"{unit} was restarted by a play that failed validation"
    return host
