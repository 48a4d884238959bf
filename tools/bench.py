#!/usr/bin/env python3
"""`make bench`: what a fresh converge and the daily no-op rerun of site.yml cost, and how both grow.

On fresh bench containers of its own (names bench-*, network monstack-bench) and an inventory of its
own in a temporary directory, shaped like the lab's, it measures:
  1. a fresh converge of site.yml on the full stack (one monitoring host, two targets with nginx,
     Redis and PostgreSQL, as lab-web and lab-db);
  2. the no-op rerun of the same, which must report 0 changed (the tool fails otherwise);
  3. the floor: a play that only gathers facts (ansible.cfg's gather_subset) on the same hosts;
  4. the no-op rerun with 1, 5 and 20 node_exporter-only targets beside the monitoring host;
  5. per host, for one more no-op rerun (untimed: the timed ones, like the floor, run with no callback
     of the bench's and show 0 changed in their PLAY RECAP): task results, tasks that ran a module on
     the host, and the `docker exec` round trips really made (docker's own event stream), plus the
     costliest tasks;
  6. what each controller speed-up of plugins/ saves: the full stack's no-op rerun with it switched off
     (SPEED_UPS), alternated with the ordinary reruns.
Every figure is repeated (--repeats, at least 3 unless --quick) and reported as median, min and max.
It writes JSON and a Markdown table (docs/benchmark.json and docs/benchmark.md), prints the table,
stops at a deadline (--deadline, 25 minutes) with every wait bounded, and always removes its
containers and network.
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NETWORK = "monstack-bench"
MONITOR = "bench-monitor"
IMAGES = ("monstack/debian:trixie", "monstack/debian:bookworm")
FLEET_SIZES = (1, 5, 20)
QUICK_FLEET_SIZES = (1, 2)
DEADLINE = 25 * 60  # seconds, the whole run
# Upper bounds of single steps, in seconds; each is cut further by what is left of the deadline.
STEP_LIMITS = {"hosts": 300, "services": 600, "converge": 900, "noop": 600, "floor": 180, "cleanup": 120}
# The criteria: ratios within one run, so a busy machine slows both sides alike.
NOOP_FLOOR_LIMIT = 7.0
FLEET_GROWTH_LIMIT = 5.0
# systemd in each container holds several inotify instances; with the kernel's default of 128 per user,
# the 20-target fleet (plus whatever else runs here) boots "degraded" (its .path units fail).
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_WANTED = 1024
MARK_BEGIN = "<!-- bench:begin (tools/bench.py writes from here to bench:end) -->"
MARK_END = "<!-- bench:end -->"
# The controller speed-ups of plugins/, each switched off for a run by its environment alone (SPEED_UPS).
# The vars plugins ansible.cfg enables, to leave monstack_preload out of; the template lookup in place of
# monstack_template.
ANSIBLE_CFG = REPO / "ansible.cfg"
BUILTIN_LOOKUP_DIR = REPO / "tools" / "bench" / "builtin_lookup"


def vars_plugins_without(name: str, config_text: str) -> str:
    """ansible.cfg's vars_plugins_enabled with `name` left out, as the ANSIBLE_VARS_ENABLED value."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    parser.read_string(config_text)
    enabled = [item.strip() for item in parser.get("defaults", "vars_plugins_enabled").split(",")]
    if name not in enabled:
        raise ValueError(f"{name} is not in ansible.cfg's vars_plugins_enabled: {enabled}")
    return ",".join(item for item in enabled if item and item != name)


def speed_up_environments(config_text: str) -> dict[str, dict[str, str]]:
    """Speed-up -> the environment of a run without it (and with everything else as configured)."""
    return {
        "monstack_preload": {"ANSIBLE_VARS_ENABLED": vars_plugins_without("monstack_preload", config_text)},
        "monstack_template": {"ANSIBLE_LOOKUP_PLUGINS": str(BUILTIN_LOOKUP_DIR)},
    }


# Actions that run on the controller only: no module reaches the host.
CONTROLLER_ACTIONS = frozenset({
    "add_host", "assert", "debug", "fail", "group_by", "import_role", "import_tasks", "include_role",
    "include_tasks", "include_vars", "meta", "set_fact", "set_stats", "validate_argument_spec",
})


class BenchError(RuntimeError):
    """A step failed or the deadline passed: the run stops, the containers still go."""


# ---------------------------------------------------------------------------------------------
# Pure parts (tests/unit/test_bench.py)


def summarize(values: list[float]) -> dict:
    """Median, min and max of repeated timings, in seconds rounded to 0.01."""
    if not values:
        raise ValueError("no values to summarize")
    return {
        "runs": len(values),
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "values": [round(value, 2) for value in values],
    }


def short_action(action: str) -> str:
    """`ansible.builtin.template` -> `template`; collection actions keep their collection."""
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if action.startswith(prefix):
            return action[len(prefix):]
    return action


def runs_on_host(record: dict) -> bool:
    """Whether a task result ran a module on the managed host (not skipped, not controller-only)."""
    if record["status"] in ("skipped", "unreachable"):
        return False
    if short_action(record["action"]) in CONTROLLER_ACTIONS:
        return False
    return record.get("delegated_connection", "") != "local"


def host_calls(record: dict) -> int:
    """Module runs on the host a result stands for: one per loop item that was not skipped."""
    if not runs_on_host(record):
        return 0
    if record.get("items") is None:
        return 1
    return record["items"] - record.get("items_skipped", 0)


def aggregate(records: list[dict], execs: dict[str, int] | None = None, top: int = 10) -> dict:
    """Per-host task results and module runs, and the tasks that cost most, from monstack_bench records.

    `execs` (host -> `docker exec` count from docker's events) is added per host when given."""
    hosts: dict[str, Counter] = defaultdict(Counter)
    by_task: dict[tuple, dict] = {}
    for record in records:
        counts = hosts[record["host"]]
        counts["tasks"] += 1
        counts[record["status"]] += 1
        if record["status"] == "skipped":
            pass
        elif runs_on_host(record):
            counts["on_host"] += 1
        else:
            counts["on_controller"] += 1
        counts["module_runs"] += host_calls(record)
        key = (record.get("role", ""), record["task"], short_action(record["action"]))
        task = by_task.setdefault(key, {"role": key[0], "task": key[1], "action": key[2], "results": 0,
                                        "module_runs": 0, "seconds": 0.0, "_spans": set()})
        task["results"] += 1
        task["module_runs"] += host_calls(record)
        # A task's time is its start to its last host's result, once per run of the task (not per host).
        task["_spans"].add((record["started"], record["finished"]))
    for task in by_task.values():
        spans: dict[float, float] = {}
        for started, finished in task.pop("_spans"):
            spans[started] = max(finished, spans.get(started, started))
        task["seconds"] = round(sum(end - start for start, end in spans.items()), 2)
        task["runs"] = len(spans)
    per_host = {}
    for host in sorted(hosts):
        counts = hosts[host]
        per_host[host] = {name: counts.get(name, 0) for name in (
            "tasks", "ok", "changed", "skipped", "failed", "ignored", "unreachable", "on_host",
            "on_controller", "module_runs")}
        if execs is not None:
            per_host[host]["docker_execs"] = execs.get(host, 0)
    tasks = list(by_task.values())
    return {
        "hosts": per_host,
        "changed": sum(counts.get("changed", 0) for counts in hosts.values()),
        "failed": sum(counts.get("failed", 0) + counts.get("unreachable", 0) for counts in hosts.values()),
        "top_by_time": sorted(tasks, key=lambda task: (-task["seconds"], task["task"]))[:top],
        "top_by_module_runs": sorted(tasks, key=lambda task: (-task["module_runs"], task["task"]))[:top],
    }


def count_execs(lines: list[str], hosts: list[str]) -> dict[str, int]:
    """`docker exec` starts per host from `docker events --format '{{.Actor.Attributes.name}}'` lines."""
    wanted = set(hosts)
    counts = Counter(line.strip() for line in lines if line.strip() in wanted)
    return {host: counts.get(host, 0) for host in hosts}


RECAP_LINE = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s", re.MULTILINE)


def recap_changed(output: str) -> dict[str, int]:
    """Changed task results per host, from the PLAY RECAP of ansible-playbook's default output; the
    timed reruns carry no callback of the bench's, so this is how they show they changed nothing."""
    counts = {host: int(changed) for host, changed in RECAP_LINE.findall(output)}
    if not counts:
        raise BenchError("no PLAY RECAP in the output of ansible-playbook")
    return counts


def fleet_inventory(targets: int) -> dict:
    """The monitoring host and `targets` node_exporter-only hosts (Debian 13 and 12 in turn)."""
    nodes = [f"bench-node{index:02d}" for index in range(1, targets + 1)]
    hosts = {MONITOR: {"bench_image": IMAGES[0]}}
    hosts.update({name: {"bench_image": IMAGES[(index + 1) % 2]} for index, name in enumerate(nodes, 1)})
    return _inventory(hosts, {"prometheus": [MONITOR], "alertmanager": [MONITOR], "blackbox": [MONITOR]})


def stack_inventory() -> dict:
    """The full stack, shaped like inventories/lab: a monitoring host, a web host and a database host."""
    hosts = {MONITOR: {"bench_image": IMAGES[0]}, "bench-web": {"bench_image": IMAGES[1]},
             "bench-db": {"bench_image": IMAGES[0]}}
    return _inventory(hosts, {
        "nginx": ["bench-web", "bench-db"], "redis": ["bench-web"], "postgres": ["bench-db"],
        "prometheus": [MONITOR], "alertmanager": [MONITOR], "blackbox": [MONITOR]})


def _inventory(hosts: dict, groups: dict) -> dict:
    return {"all": {
        "vars": {"ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3"},
        "hosts": hosts,
        "children": {group: {"hosts": {name: None for name in members}} for group, members in groups.items()},
    }}


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else float("inf")


def criteria(figures: dict) -> list[dict]:
    """The issue's three criteria, each with what was measured and whether it holds."""
    rows = []
    noop, floor = figures.get("noop_stack"), figures.get("floor_stack")
    if noop and floor:
        value = ratio(noop["median"], floor["median"])
        rows.append({"criterion": "no-op rerun of the full stack / fact-gathering floor (medians)",
                     "measured": f"{value:.2f}x", "limit": f"<= {NOOP_FLOOR_LIMIT:g}x",
                     "holds": value <= NOOP_FLOOR_LIMIT})
    sizes = sorted(int(key.rsplit("_", 1)[1]) for key in figures if key.startswith("noop_fleet_"))
    if len(sizes) >= 2:
        small, large = figures[f"noop_fleet_{sizes[0]}"], figures[f"noop_fleet_{sizes[-1]}"]
        value = ratio(large["median"], small["median"])
        rows.append({"criterion": f"no-op rerun, {sizes[-1]} targets / {sizes[0]} target{'s' * (sizes[0] > 1)} (medians)",
                     "measured": f"{value:.2f}x", "limit": f"<= {FLEET_GROWTH_LIMIT:g}x",
                     "holds": value <= FLEET_GROWTH_LIMIT})
    changed = [figure["changed"] for key, figure in figures.items() if key.startswith("noop_")]
    if changed:
        rows.append({"criterion": "changed tasks in every no-op rerun, at every size",
                     "measured": str(max(changed)), "limit": "0", "holds": max(changed) == 0})
    return rows


def speed_up_savings(figures: dict) -> list[dict]:
    """Per speed-up measured, the full stack's no-op rerun without it against with it (medians of the
    same alternated runs) and the share of the time it saves."""
    with_it = figures.get("noop_stack")
    rows = []
    for key, figure in figures.items():
        if with_it and key.startswith("noop_without_"):
            share = 1 - with_it["median"] / figure["median"] if figure["median"] else 0.0
            rows.append({"speed_up": key[len("noop_without_"):-len("_stack")], "without": figure["median"],
                         "with": with_it["median"], "saved": f"{share:.0%}"})
    return rows


FIGURE_LABELS = {
    "converge_stack": "fresh converge of site.yml, full stack",
    "noop_stack": "no-op rerun of site.yml, full stack",
    "floor_stack": "fact gathering alone (the floor), full stack",
}


def figure_label(key: str) -> str:
    if key in FIGURE_LABELS:
        return FIGURE_LABELS[key]
    if key.startswith("noop_without_"):
        return f"no-op rerun of site.yml, full stack, without {key[len('noop_without_'):-len('_stack')]}"
    kind, _, size = key.rpartition("_")
    what = {"noop_fleet": "no-op rerun", "floor_fleet": "fact gathering alone"}[kind]
    return f"{what}, monitoring host + {size} node_exporter target{'s' * (int(size) > 1)}"


def render_tables(results: dict) -> str:
    """The Markdown of one run: figures, criteria, per-host round trips and the costliest tasks."""
    lines = ["| figure | hosts | runs | median s | min s | max s | changed |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, figure in results["figures"].items():
        lines.append(f"| {figure_label(key)} | {figure['hosts']} | {figure['runs']} | {figure['median']:.2f} "
                     f"| {figure['min']:.2f} | {figure['max']:.2f} | {figure['changed']} |")
    lines += ["", "| criterion | measured | limit | holds |", "|---|---:|---:|---|"]
    for row in results["criteria"]:
        lines.append(f"| {row['criterion']} | {row['measured']} | {row['limit']} | {'yes' if row['holds'] else '**no**'} |")
    saved = speed_up_savings(results["figures"])
    if saved:
        lines += ["", "| speed-up (plugins/) | no-op rerun without it, median s | with it, median s | saved |",
                  "|---|---:|---:|---:|"]
        for row in saved:
            lines.append(f"| {row['speed_up']} | {row['without']:.2f} | {row['with']:.2f} | {row['saved']} |")
    breakdown = results.get("breakdown") or {}
    for key, detail in breakdown.items():
        lines += ["", f"Per host, {figure_label(key)} (one run):", "",
                  "| host | task results | ok | changed | skipped | ran a module on the host | controller only "
                  "| module runs on the host | docker execs |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for host, counts in detail["hosts"].items():
            lines.append(f"| {host} | {counts['tasks']} | {counts['ok']} | {counts['changed']} | {counts['skipped']} "
                         f"| {counts['on_host']} | {counts['on_controller']} | {counts['module_runs']} "
                         f"| {counts.get('docker_execs', '-')} |")
        lines += ["", "Costliest tasks (seconds from the task's start to its last host's result, summed over its runs):",
                  "", "| task | role | action | runs | results | module runs | seconds |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for task in detail["top_by_time"]:
            lines.append(f"| {task['task']} | {task['role'] or '-'} | {task['action']} | {task['runs']} | "
                         f"{task['results']} | {task['module_runs']} | {task['seconds']:.2f} |")
    return "\n".join(lines)


def render_machine(machine: dict) -> str:
    return "\n".join([
        "| nproc | memory | CPU | docker | ansible-core | Python | load before / after |",
        "|---:|---|---|---|---|---|---|",
        f"| {machine['nproc']} | {machine['memory']} | {machine['cpu']} | {machine['docker']} | "
        f"{machine['ansible_core']} | {machine['python']} | {machine['load_before']} / {machine.get('load_after', '-')} |",
    ])


def render_marked_section(results: dict, measured: str, tables: str, begin: str = MARK_BEGIN,
                          end: str = MARK_END) -> str:
    """A generated section (this bench's or tools/series_bench.py's): its markers, the line saying how it
    was measured, why it stopped if it did, the machine and the tables."""
    return "\n".join([
        begin,
        measured,
        *(["", f"**Incomplete:** {results['incomplete']}"] if results.get("incomplete") else []),
        "",
        render_machine(results["machine"]),
        "",
        tables,
        end,
    ])


def render_section(results: dict) -> str:
    """What goes between the bench markers of docs/benchmark.md."""
    return render_marked_section(
        results, f"Measured {results['finished']} with `{results['command']}` ({results['elapsed']:.0f} s in all; "
                 f"other containers running beside the bench at the start: {results['machine']['other_containers']}).",
        render_tables(results))


def merge_document(existing: str | None, section: str, begin: str = MARK_BEGIN, end: str = MARK_END) -> str:
    """Put the generated section between its markers, keeping what is written around it; a document
    without them gets the section appended."""
    if existing and begin in existing and end in existing:
        head, rest = existing.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    return (existing.rstrip() + "\n\n" if existing else "# Benchmark\n\n") + section + "\n"


# ---------------------------------------------------------------------------------------------
# The runs


class BoundedRuns:
    """The deadline, the log directory and the bounded commands of a bench run (tools/series_bench.py's
    too): every step is cut by its own bound and by what is left of the deadline."""

    step_limits = STEP_LIMITS
    workdir_prefix = "monstack-bench-"

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.deadline = time.monotonic() + args.deadline
        self.workdir = Path(tempfile.mkdtemp(prefix=self.workdir_prefix))
        self.inventory = self.workdir / "inventory"
        self.logs = self.workdir / "logs"
        self.logs.mkdir()
        self.log_index = 0

    def remaining(self, step: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 5:
            raise BenchError(f"the deadline of {self.args.deadline:.0f} s passed before step '{step}'")
        return min(self.step_limits[step], left)

    def run(self, step: str, argv: list[str], name: str, env: dict | None = None) -> tuple[float, Path]:
        """Run argv with the step's time bound; its whole process group is killed when the bound passes."""
        timeout = self.remaining(step)
        self.log_index += 1
        log = self.logs / f"{self.log_index:02d}-{name}.log"
        started = time.monotonic()
        with log.open("w") as handle:
            process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                raise BenchError(f"{name}: no end after {timeout:.0f} s (log: {log})") from None
        elapsed = time.monotonic() - started
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise BenchError(f"{name}: exit {code} (log: {log})\n{tail}")
        return elapsed, log

    def measure(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError


class Bench(BoundedRuns):
    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.containers: set[str] = set()
        self.network_made = False
        # Filled as figures complete, so a run stopped by its deadline still reports what it measured.
        self.figures: dict = {}
        self.breakdowns: dict = {}
        # Concerns a bench cannot run (say, backups without a backup host) are left out by tag, and said.
        self.site_args = ["--skip-tags", args.skip_tags] if args.skip_tags else []

    def playbook(self, step: str, playbook: str, name: str, extra: list[str] | None = None,
                 record: bool = False, hosts: list[str] | None = None, env_extra: dict | None = None) -> dict:
        """ansible-playbook against the bench inventory; with record, the callback's records and docker's
        count of exec round trips per host come back with the time."""
        env = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env_extra or {})}
        records_file = self.workdir / f"records-{self.log_index + 1:02d}.json"
        if record:
            env.update({"ANSIBLE_CALLBACK_PLUGINS": str(REPO / "plugins" / "callback"),
                        "ANSIBLE_CALLBACKS_ENABLED": "monstack_bench",
                        "MONSTACK_BENCH_OUTPUT": str(records_file)})
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), playbook] + (extra or [])
        events = None
        if record:
            # docker's own count of round trips: one exec_start per `docker exec` the connection makes.
            events = subprocess.Popen(
                ["docker", "events", "--filter", "type=container", "--filter", "event=exec_start",
                 "--format", "{{.Actor.Attributes.name}}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
            time.sleep(0.5)
        try:
            elapsed, log = self.run(step, argv, name, env)
        finally:
            lines: list[str] = []
            if events is not None:
                time.sleep(1.0)  # events arrive asynchronously; the run has ended, nothing new is ours
                events.terminate()
                try:
                    lines = events.communicate(timeout=10)[0].splitlines()
                except subprocess.TimeoutExpired:
                    events.kill()
                    lines = events.communicate(timeout=10)[0].splitlines()
        result = {"seconds": elapsed, "log": str(log)}
        if record:
            data = json.loads(records_file.read_text())
            result["records"] = data["records"]
            result["execs"] = count_execs(lines, hosts or [])
            summary = aggregate(data["records"], result["execs"])
            result["summary"] = summary
            if summary["failed"]:
                raise BenchError(f"{name}: {summary['failed']} failed or unreachable results (log: {log})")
        return result

    # -- bench hosts
    def write_inventory(self, inventory: dict) -> list[str]:
        if self.inventory.exists():
            shutil.rmtree(self.inventory)
        shutil.copytree(REPO / "inventories" / "lab" / "group_vars", self.inventory / "group_vars")
        (self.inventory / "group_vars" / "all.yml").write_text("---\nmonitoring_environment: bench\n")
        (self.inventory / "hosts.yml").write_text("---\n" + json.dumps(inventory, indent=2) + "\n")
        hosts = list(inventory["all"]["hosts"])
        return hosts

    def start_hosts(self, hosts: list[str], name: str) -> None:
        self.network_made = True
        self.containers.update(hosts)
        self.playbook("hosts", "tools/bench/hosts.yml", name)

    def remove_containers(self, names: list[str]) -> None:
        if names:
            subprocess.run(["docker", "rm", "--force", *sorted(names)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=STEP_LIMITS["cleanup"], check=False)
            self.containers.difference_update(names)

    def cleanup(self) -> None:
        """Remove exactly the containers and network this run made. Bounded; never raises."""
        try:
            self.remove_containers(list(self.containers))
            if self.network_made:
                subprocess.run(["docker", "network", "rm", NETWORK], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=STEP_LIMITS["cleanup"], check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"bench: cleanup incomplete ({error}); remove bench-* containers and {NETWORK} by hand",
                  file=sys.stderr)

    # -- measurements
    def figure(self, seconds: list[float], hosts: int, summaries: list[dict] | None = None) -> dict:
        figure = {"hosts": hosts, **summarize(seconds)}
        figure["changed"] = max((summary["changed"] for summary in summaries or []), default=0)
        return figure

    def noop_and_floor(self, label: str, hosts: list[str], figures: dict, breakdown: dict) -> None:
        """Alternate no-op reruns and fact-gathering runs, so drift in the machine's load hits both alike.

        The timed reruns are site.yml as an operator runs it, with no callback of the bench's (as the
        floor runs); their PLAY RECAP must show 0 changed. One more rerun, untimed, is recorded by the
        callback and counted by docker for the breakdown, and must change nothing either."""
        noop_times, floor_times = [], []
        # On the full stack, also a rerun without each speed-up of plugins/ per round (6).
        speed_ups = speed_up_environments(ANSIBLE_CFG.read_text()) if label == "stack" else {}
        without_times: dict[str, list[float]] = {name: [] for name in speed_ups}
        for index in range(self.args.repeats):
            noop_times.append(self.noop(label, f"noop-{label}-{index + 1}"))
            floor = self.playbook("floor", "tools/bench/facts.yml", f"floor-{label}-{index + 1}")
            floor_times.append(floor["seconds"])
            print(f"bench: {label}: no-op {noop_times[-1]:.1f} s (0 changed), floor {floor['seconds']:.1f} s",
                  flush=True)
            for name, env in speed_ups.items():
                without_times[name].append(self.noop(label, f"noop-{label}-without-{name}-{index + 1}", env))
                print(f"bench: {label}: no-op without {name} {without_times[name][-1]:.1f} s", flush=True)
        recorded = self.playbook("noop", "site.yml", f"noop-{label}-recorded", extra=self.site_args, record=True,
                                 hosts=hosts)
        if recorded["summary"]["changed"]:
            changes = sorted({(record["host"], record["task"]) for record in recorded["records"]
                              if record["status"] == "changed"})
            raise BenchError(f"the recorded no-op rerun ({label}) changed {recorded['summary']['changed']} task "
                             f"results, it must change none: {changes} (log: {recorded['log']})")
        # A timed rerun that changed anything stopped the run above, so its changed count is 0 here.
        figures[f"noop_{label}"] = self.figure(noop_times, len(hosts), [recorded["summary"]])
        figures[f"floor_{label}"] = self.figure(floor_times, len(hosts))
        for name, seconds in without_times.items():
            figures[f"noop_without_{name}_{label}"] = self.figure(seconds, len(hosts))
        breakdown[f"noop_{label}"] = recorded["summary"]

    def noop(self, label: str, name: str, env_extra: dict | None = None) -> float:
        """One timed no-op rerun of site.yml; its PLAY RECAP must show 0 changed."""
        noop = self.playbook("noop", "site.yml", name, extra=self.site_args, env_extra=env_extra)
        counts = recap_changed(Path(noop["log"]).read_text(errors="replace"))
        if any(counts.values()):
            raise BenchError(f"the no-op rerun ({label}) changed task results, it must change none: "
                             f"{counts} (log: {noop['log']})")
        return noop["seconds"]

    def measure(self) -> None:
        figures, breakdown = self.figures, self.breakdowns
        if not self.args.fleet_only:
            self.measure_stack(figures, breakdown)
        # 4. The fleet: the monitoring host stays; targets are added, each size converged first (Prometheus
        # scrapes what the inventory lists), then rerun.
        for size in self.args.fleet_sizes:
            hosts = self.write_inventory(fleet_inventory(size))
            self.start_hosts(hosts, f"hosts-fleet-{size}")
            converge = self.playbook("converge", "site.yml", f"converge-fleet-{size}", extra=self.site_args,
                                     record=True, hosts=hosts)
            print(f"bench: fleet of {size}: converged in {converge['seconds']:.1f} s", flush=True)
            self.noop_and_floor(f"fleet_{size}", hosts, figures, breakdown)

    def measure_stack(self, figures: dict, breakdown: dict) -> None:
        # 1. Fresh converges: new containers, a new CA, the services the exporters watch, then site.yml.
        hosts = self.write_inventory(stack_inventory())
        converge_times, summaries = [], []
        for index in range(self.args.repeats):
            self.remove_containers(hosts)
            shutil.rmtree(self.workdir / "pki", ignore_errors=True)
            self.start_hosts(hosts, f"hosts-stack-{index + 1}")
            self.playbook("services", "tools/testbench/services.yml", f"services-{index + 1}")
            converge = self.playbook("converge", "site.yml", f"converge-stack-{index + 1}", extra=self.site_args,
                                     record=True, hosts=hosts)
            converge_times.append(converge["seconds"])
            summaries.append(converge["summary"])
            print(f"bench: fresh converge {index + 1}: {converge['seconds']:.1f} s, "
                  f"{converge['summary']['changed']} changed", flush=True)
        figures["converge_stack"] = self.figure(converge_times, len(hosts), summaries)
        # 2, 3, 5. The no-op rerun against the floor on the same hosts.
        self.noop_and_floor("stack", hosts, figures, breakdown)
        self.remove_containers([host for host in hosts if host != MONITOR])

    def results(self) -> dict:
        """What was measured; the table shows the full stack and the largest fleet, the JSON every size."""
        fleets = sorted((int(key.rsplit("_", 1)[1]) for key in self.breakdowns if key.startswith("noop_fleet_")))
        shown = ["noop_stack"] + ([f"noop_fleet_{fleets[-1]}"] if fleets else [])
        breakdown = {key: self.breakdowns[key] for key in shown if key in self.breakdowns}
        return {"figures": self.figures, "breakdown": breakdown, "breakdowns": self.breakdowns}


def ensure_inotify_instances() -> None:
    """Raise the per-user inotify instance limit to INOTIFY_WANTED if it is lower (never lowers it)."""
    try:
        current = int(INOTIFY_INSTANCES.read_text())
        if current < INOTIFY_WANTED:
            INOTIFY_INSTANCES.write_text(f"{INOTIFY_WANTED}\n")
            print(f"bench: raised fs.inotify.max_user_instances from {current} to {INOTIFY_WANTED} "
                  "(systemd in every container holds several)", flush=True)
    except (OSError, ValueError) as error:
        print(f"bench: could not raise fs.inotify.max_user_instances ({error}); large fleets may boot degraded",
              file=sys.stderr)


def machine_facts() -> dict:
    def command(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = "unknown"
    memory = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")))
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    ansible = command([str(BIN / "ansible"), "--version"]).splitlines()
    others = [name for name in command(["docker", "ps", "--format", "{{.Names}}"]).splitlines() if name]
    return {
        "nproc": os.cpu_count(),
        "memory": memory,
        "cpu": cpu,
        "docker": command(["docker", "version", "--format", "{{.Server.Version}}"]),
        "ansible_core": ansible[0].split("[core ")[-1].rstrip("]") if ansible else "unknown",
        "python": platform.python_version(),
        "load_before": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "other_containers": len(others),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one run of each figure, fleets of 1 and 2 targets, results to /tmp (a try-out)")
    parser.add_argument("--repeats", type=int, help="runs of each figure (default 3; 1 with --quick)")
    parser.add_argument("--fleet-sizes", help="comma-separated target counts (default 1,5,20)")
    parser.add_argument("--fleet-only", action="store_true", help="only the fleet figures (4), on a fresh monitoring host")
    parser.add_argument("--skip-tags", default="", help="site.yml tags to leave out (comma-separated role tags)")
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds for the whole run (default 1500)")
    parser.add_argument("--json", type=Path, help="results file (default docs/benchmark.json)")
    parser.add_argument("--markdown", type=Path, help="Markdown file (default docs/benchmark.md)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.repeats < 1 or args.deadline <= 0:
        parser.error("--repeats and --deadline must be positive")
    sizes = args.fleet_sizes.split(",") if args.fleet_sizes else (QUICK_FLEET_SIZES if args.quick else FLEET_SIZES)
    args.fleet_sizes = sorted({int(size) for size in sizes})
    if not 1 <= args.fleet_sizes[0] or args.fleet_sizes[-1] > 50:
        parser.error("--fleet-sizes: each from 1 to 50")
    default_dir = Path(tempfile.gettempdir()) if args.quick else REPO / "docs"
    args.json = args.json or default_dir / ("monstack-bench-quick.json" if args.quick else "benchmark.json")
    args.markdown = args.markdown or default_dir / ("monstack-bench-quick.md" if args.quick else "benchmark.md")
    return args


def measure_within_bounds(bench: BoundedRuns, label: str) -> str | None:
    """bench.measure(), its containers removed whatever happens: "" when it completed, the first failure
    when a step failed or the deadline passed, None when interrupted."""
    try:
        bench.measure()
    except BenchError as error:
        print(f"{label}: FAILED: {error}\n{label}: logs kept in {bench.logs}", file=sys.stderr)
        return str(error)
    except KeyboardInterrupt:
        print(f"{label}: interrupted; logs kept in {bench.logs}", file=sys.stderr)
        return None
    finally:
        bench.cleanup()
    return ""


def results_header(command: str, machine: dict, started: float, failure: str) -> dict:
    """What a results file opens with: the command, when it finished and took, the machine (with its load
    after the run), and why the run stopped, if it did (a stopped run still writes what it measured)."""
    machine["load_after"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "command": command,
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed": round(time.monotonic() - started, 1),
        "machine": machine,
        "incomplete": failure.splitlines()[0] if failure else "",
    }


def write_results(args: argparse.Namespace, results: dict, section: str, tables: str, merge) -> None:
    """The results as JSON (args.json), the section merged into args.markdown, the tables printed."""
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    existing = args.markdown.read_text() if args.markdown.exists() else None
    args.markdown.write_text(merge(existing, section))
    print(render_machine(results["machine"]) + "\n\n" + tables)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(argv))}" if argv else "")
    machine = machine_facts()
    ensure_inotify_instances()
    bench = Bench(args)
    started = time.monotonic()
    print(f"bench: work directory {bench.workdir}; at most {args.deadline:.0f} s", flush=True)
    failure = measure_within_bounds(bench, "bench")
    if failure is None:
        return 130
    if failure and not bench.figures:
        return 1
    results = {**results_header(command, machine, started, failure), "repeats": args.repeats,
               "fleet_sizes": args.fleet_sizes, **bench.results()}
    results["criteria"] = criteria(results["figures"])
    write_results(args, results, render_section(results), render_tables(results), merge_document)
    print(f"bench: wrote {args.json} and {args.markdown}; logs {'kept' if failure else 'were'} in {bench.logs}")
    if failure:
        return 1
    shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0 if all(row["holds"] for row in results["criteria"]) else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
