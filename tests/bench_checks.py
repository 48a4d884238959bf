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
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import testinfra
import testinfra.utils.ansible_runner
import yaml

REPO = Path(__file__).resolve().parents[1]
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
PLAYBOOK_TIMEOUT = 600  # seconds; a full converge of a scenario takes well under this
# The stack's CA certificate on every host (monitoring_tls_ca_file).
CA_FILE = "/etc/monstack/tls/ca.crt"

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


def _curl() -> str:
    """curl trusting the stack's CA, as the stack's own user: Prometheus, Alertmanager and the exporters
    refuse a request without it (the nginx, Redis and MongoDB exporters ignore it)."""
    command = f"curl --cacert {CA_FILE}"
    if INVENTORY and (pki_dir() / "scrape-password").is_file():
        user, password = scrape_credentials()
        command += f" --user {shlex.quote(user + ':' + password)}"
    return command


CURL = _curl()


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
        """Counts per host from the PLAY RECAP; none found fails, so a check over them cannot pass vacuously."""
        found = {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                 for m in _RECAP.finditer(self.output)}
        assert found, f"no PLAY RECAP in the playbook's output:\n{self.tail()}"
        return found

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



def assert_dry_run_changes_nothing(*args: str, secrets: tuple = (), limit: str | None = None) -> PlaybookRun:
    """`site.yml --check --diff` on the converged scenario: it passes, every host of the inventory (or of
    `limit`) is in its recap with 0 changed and 0 failed, and none of `secrets` is in its output."""
    run = run_playbook("site.yml", "--check", "--diff", *args, limit=limit)
    assert run.rc == 0, run.tail()
    recap = run.recap()
    assert set(recap) == set(hosts(limit or "all")), run.tail()
    changed = [line for line in run.output.splitlines() if line.startswith("changed:")]
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap.values()), (recap, changed)
    shown = [index for index, secret in enumerate(secrets) if secret in run.output]
    assert not shown, f"secrets number {shown} of {len(secrets)} are in the dry run's output"
    return run

# Run on a bench host by HostState: what the stack may change, described so that two captures compare.
# Content (sha256), type, owner, group, mode and link target of every file under CONTENT_ROOTS;
# everything but the content under METADATA_ROOTS (each to its depth); the installed packages; the
# nftables ruleset; and every service's state and main PID. Errors are not swallowed: an unreadable
# tree fails the capture, and with it the test.
_HOST_STATE_SCRIPT = r"""
import hashlib, json, os, stat, subprocess, sys
content_roots, metadata_roots = json.loads(sys.argv[1]), json.loads(sys.argv[2])
state = {}
def describe(path, content):
    info = os.lstat(path)
    entry = [stat.S_IFMT(info.st_mode), info.st_uid, info.st_gid, oct(info.st_mode & 0o7777)]
    if stat.S_ISLNK(info.st_mode):
        entry.append(os.readlink(path))
    elif stat.S_ISREG(info.st_mode) and content:
        with open(path, "rb") as handle:
            entry.append(hashlib.sha256(handle.read()).hexdigest())
    state[path] = entry
def walk(root, content, depth):
    if not os.path.lexists(root):
        state[root] = "absent"
        return
    describe(root, content)
    if depth == 0 or not stat.S_ISDIR(os.lstat(root).st_mode):
        return
    for name in sorted(os.listdir(root)):
        walk(os.path.join(root, name), content, depth - 1)
for root in content_roots:
    walk(root, True, -1)
for root, depth in metadata_roots:
    walk(root, False, depth)
def run(*command):
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 and not (command[0] == "nft" and "No such file" in done.stderr):
        raise SystemExit(f"{' '.join(command)}: rc {done.returncode}: {done.stderr}")
    return done.stdout
state["packages"] = run("dpkg-query", "--show", "--showformat=${Package} ${Version} ${db:Status-Status}\n")
state["nftables"] = run("nft", "--stateless", "list", "ruleset") if os.path.exists("/usr/sbin/nft") else "no nft"
units = run("systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain").split("\n")
names = sorted(line.split()[0] for line in units if line.strip() and line.split()[0].endswith(".service"))
shown = run("systemctl", "show", "--property=Id,ActiveState,MainPID", "--", *names).strip().split("\n\n")
# Services running or failed, with their PIDs: one that a timer or a path unit happens to be starting
# or stopping (the certificate check) is passing through, not a state to compare.
state["services"] = sorted(" ".join(sorted(lines)) for lines in (block.split("\n") for block in shown)
                           if "ActiveState=active" in lines or "ActiveState=failed" in lines)
print(json.dumps(state))
"""


class HostState:
    """What a play may change on a host, captured before and compared after: content, owner, group,
    mode and presence of every file where the stack writes (and the metadata of the system directories
    around them), the installed packages, the nftables ruleset, and each service's state and PID.

    Data the daemons write all the time (their data directories, the textfile metrics the timers
    rewrite) is compared by metadata only, to the depth given."""

    CONTENT_ROOTS = ("/etc", "/usr/local", "/var/lib/monstack", "/var/lib/dpkg/status")
    METADATA_ROOTS = (("/", 1), ("/usr", -1), ("/var", 1), ("/var/lib", 1), ("/var/backups", 2), ("/var/cache", 1),
                      ("/var/log", 1), ("/srv", 2), ("/opt", 2), ("/home", 2), ("/tmp", 0), ("/root", 1))

    def __init__(self, host):
        self.host = host
        self.before = self.capture()

    def capture(self) -> dict:
        command = (f"python3 -c {shlex.quote(_HOST_STATE_SCRIPT)} {shlex.quote(json.dumps(self.CONTENT_ROOTS))} "
                   f"{shlex.quote(json.dumps(self.METADATA_ROOTS))}")
        done = self.host.run(command)
        assert done.rc == 0, f"capturing the host's state failed (rc {done.rc}): {done.stderr}"
        return json.loads(done.stdout)

    def changes(self, pids_may_change: tuple = ()) -> list[str]:
        """What differs now from the capture at construction, one line each ([] when nothing).
        Services named in pids_may_change may have a new main PID (a rollback restarts them)."""
        after = self.capture()
        lines = []
        for key in sorted(set(self.before) | set(after)):
            old, new = self.before.get(key, "absent"), after.get(key, "absent")
            if key == "services":
                old, new = (self._without_pids(value, pids_may_change) for value in (old, new))
                lines += [f"service now: {entry}" for entry in sorted(set(new) - set(old))]
                lines += [f"service before: {entry}" for entry in sorted(set(old) - set(new))]
            elif old != new:
                lines.append(f"{key}: {old!r} -> {new!r}" if key not in ("packages", "nftables")
                             else f"{key} changed")
        return lines

    @staticmethod
    def _without_pids(services: list, names: tuple) -> list:
        return [" ".join(part for part in entry.split() if not part.startswith("MainPID="))
                if any(f"Id={name}.service" in entry.split() for name in names) else entry
                for entry in services]


def http_status(host, url: str, user: str = "", password: str = "", cacert: str = CA_FILE,
                max_time: int = 5, cert: str = "", key: str = "") -> int:
    """HTTP status of `url` fetched on `host` (0 when nothing answers or TLS fails); cacert "" trusts
    only the system's store; cert and key: the client certificate presented (Loki requires one)."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(max_time)]
    if cacert:
        cmd += ["--cacert", cacert]
    if cert:
        cmd += ["--cert", cert, "--key", key]
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


def failure_messages(output: str) -> list[str]:
    """The `msg` of every failed task result in ansible-playbook's output (YAML result format)."""
    messages, lines = [], output.splitlines()
    for index, line in enumerate(lines):
        if "FAILED! =>" not in line:
            continue
        body = [line.split("FAILED! =>", 1)[1]]
        for following in lines[index + 1:]:
            if following and not following[0].isspace():
                break
            body.append(following)
        text = "\n".join(body)
        try:
            result = yaml.safe_load(textwrap.dedent(text)) if body[0].strip() == "" else yaml.safe_load(text)
        except yaml.YAMLError:
            result = None
        messages.append(str(result.get("msg", text)) if isinstance(result, dict) else text)
    return messages


_NAMED = re.compile(r"^\s*([a-z][a-z0-9_]*)(?:\[[^\]]*\]|\.[A-Za-z0-9_]+)*: ", re.M)


def named_variables(message: str) -> set[str]:
    """The variables a preflight message names: one "<variable>: <problem>" line each."""
    return set(_NAMED.findall(message))


def assert_refused_before_any_change(host, extra_vars: dict, message: str, limit: str,
                                     playbook: str = "site.yml", variable: str = "") -> PlaybookRun:
    """Run `playbook` on `limit` with bad `extra_vars` and check what an operator relies on: the play
    fails, says `message`, names `variable` and no other (when given), and nothing on `host` changes:
    files, packages, ruleset and services compared by HostState. Returns the run."""
    state = HostState(host)
    run = run_playbook(playbook, "-e", json.dumps(extra_vars), limit=limit)
    assert run.rc != 0, f"the play accepted {extra_vars}:\n{run.tail()}"
    failures = "\n".join(failure_messages(run.output))
    assert message in failures, f"the failure does not say {message!r}:\n{run.tail()}"
    if variable:
        named = named_variables(failures)
        assert named <= {variable}, f"the failure names {sorted(named)}, not only {variable}:\n{failures}"
    changes = state.changes()
    assert changes == [], f"the failed play changed the host:\n" + "\n".join(changes)
    return run


def assert_validation_refuses(target: str, unit: str, extra_vars: dict):
    """Run site.yml on `target` with a bad value that only the daemon's own validator can catch, and
    check what an operator relies on: the play fails at validation and nothing on the host changes,
    `unit` keeping its PID. Returns the host for further checks."""
    host = testinfra.get_host(f"ansible://{target}?ansible_inventory={INVENTORY}")
    assert_refused_before_any_change(host, extra_vars, "failed to validate", limit=target)
    return host


# --- The bad-input corpus (tests/bad_input.yml) ------------------------------------------------------

BAD_INPUT_CORPUS = REPO / "tests" / "bad_input.yml"


def bad_input_cases(scenario: str) -> list:
    """The corpus cases of one scenario, as pytest parameters named by their id."""
    import pytest  # only the testinfra tests need it

    cases = yaml.safe_load(BAD_INPUT_CORPUS.read_text())["cases"]
    return [pytest.param(case, id=case["id"]) for case in cases if case["scenario"] == scenario]


def _main_pid(host, unit: str) -> int:
    return int(host.check_output(f"systemctl show -p MainPID --value {shlex.quote(unit)}"))


def check_bad_input_case(case: dict) -> None:
    """One case of the corpus, run as an operator would (ansible-playbook with -e on one host):
    - refused: the play fails before any change, naming that variable and no other;
    - accepted: the play passes and the daemon runs with the value in force; a rerun without it
      puts the host back;
    - rolled_back: the value passes every check but the daemon does not come up on it: the play fails
      naming the cause, and the host is as it was, the daemon answering on what it had."""
    host = bench_host(case["host"])
    playbook = case.get("playbook", "site.yml")
    if "refused" in case:
        assert_refused_before_any_change(host, case["vars"], case.get("says", case["refused"]), limit=case["host"],
                                         playbook=playbook, variable=case["refused"])
    elif "accepted" in case:
        expect = case["accepted"]
        try:
            run = run_playbook(playbook, "-e", json.dumps(case["vars"]), limit=case["host"])
            assert run.rc == 0, f"the play refused {case['vars']}:\n{run.tail()}"
            assert host.service(expect["unit"]).is_running, journal(host, expect["unit"])
            if "argument" in expect:
                arguments = host.file(f"/proc/{_main_pid(host, expect['unit'])}/cmdline").content.split(b"\0")
                assert expect["argument"].encode() in arguments, arguments
            for path, wanted in (expect.get("paths") or {}).items():
                found = host.file(path)
                assert (found.user, found.group, oct(found.mode)) == tuple(wanted), (path, found.user, found.group)
        finally:
            back = run_playbook(playbook, limit=case["host"])
            assert back.rc == 0, f"the rerun without {case['vars']} failed:\n{back.tail()}"
    else:
        expect = case["rolled_back"]
        state = HostState(host)
        run = run_playbook(playbook, "-e", json.dumps({**case["vars"], "daemon_ready_timeout": 10}),
                           limit=case["host"])
        assert run.rc != 0, f"the play accepted {case['vars']}:\n{run.tail()}"
        failures = "\n".join(failure_messages(run.output))
        for said in ("did not come up after the change", expect["journal"],
                     f"{expect['unit']} answers again on what it had"):
            assert said in failures, f"the failure does not say {said!r}:\n{failures or run.tail()}"
        changes = state.changes(pids_may_change=(expect["unit"],))
        assert changes == [], "the rolled-back play left the host changed:\n" + "\n".join(changes)
        assert host.service(expect["unit"]).is_running, journal(host, expect["unit"])
