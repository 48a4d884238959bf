#!/usr/bin/env python3
"""`make bench-series`: what a Prometheus pair and VictoriaMetrics cost per 100k active series, measured.

On three bench containers of its own (names sbench-*, network monstack-sbench, 10.213.61.0/24) and an
inventory of its own in a temporary directory, it converges the stack's own playbooks
(tools/series_bench/stack.yml: pki, node_exporter, VictoriaMetrics, Prometheus, firewall) for a
Prometheus pair (sbench-p1 on Debian 13, sbench-p2 on Debian 12, group prometheus) writing to
VictoriaMetrics (sbench-vm, Debian 13). On sbench-vm one process (tools/series_bench/exporter.py,
standard library) serves N synthetic series that both Prometheus scrape every 15 s (the stack's
scrape interval). For each size N (default 50k, 200k, 500k, in that order: each size keeps the
series of the one before, so nothing churns), after a warm-up, it reads over a bounded window, for
each Prometheus and for VictoriaMetrics:
  - CPU: utime+stime of the daemon's main process (/proc/<pid>/stat), in cores over the window;
  - memory: resident set size (VmRSS), the largest of the samples taken in the window;
  - disk: the growth of the data directory (du -sb) over the window, per sample ingested and
    extrapolated to a day per 100k series;
  - samples ingested per second (prometheus_tsdb_head_samples_appended_total;
    vm_rows_inserted_total, which counts both replicas' copies before deduplication);
  - active series (prometheus_tsdb_head_series; vm_cache_entries{type="storage/hour_metric_ids"}).
It writes JSON and a Markdown table (docs/series_benchmark.json and a marked section of
docs/benchmark.md), stops at a deadline (--deadline, 20 minutes) with every wait bounded, and always
removes its containers and network.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HERE = REPO / "tools" / "series_bench"
NETWORK = "monstack-sbench"
# Not the lab's (10.213.57.0/24) nor molecule/metrics's (10.213.58.0/24); a gap is left for the next
# scenario that wants a fixed range.
SUBNET = "10.213.61.0/24"
GATEWAY = "10.213.61.1"
PAIR = ("sbench-p1", "sbench-p2")
VM = "sbench-vm"
HOSTS = {PAIR[0]: "monstack/debian:trixie", PAIR[1]: "monstack/debian:bookworm", VM: "monstack/debian:trixie"}
EXPORTER_PORT = 9911
EXPORTER_UNIT = "sbench-exporter"
SCRAPE_INTERVAL = 15  # seconds, prometheus_scrape_interval's default, which the bench keeps
SIZES = (50_000, 200_000, 500_000)
QUICK_SIZES = (5_000,)
DEADLINE = 20 * 60  # seconds, the whole run
# Upper bounds of single steps, in seconds; each is cut further by what is left of the deadline.
STEP_LIMITS = {"hosts": 240, "converge": 600, "exec": 60, "exporter": 90, "series": 240, "cleanup": 120}
CA_FILE = "/etc/monstack/tls/ca.crt"
# What is read on each host: the daemon's unit, where it answers, its data directory (the roles' defaults).
DAEMONS = {
    "prometheus": {"unit": "prometheus", "url": "https://127.0.0.1:9090/metrics", "data": "/var/lib/prometheus/data"},
    "victoriametrics": {"unit": "victoriametrics", "url": "https://127.0.0.1:8428/metrics",
                        "data": "/var/lib/victoriametrics/data"},
}
MARK_BEGIN = "<!-- series-bench:begin (tools/series_bench.py writes from here to series-bench:end) -->"
MARK_END = "<!-- series-bench:end -->"
PER = 100_000  # the unit of series the figures are given per
DAY = 86_400


def _load(relative: str, name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tools/bench.py's machine table, bounded runs and results writing, so both benches describe the machine,
# bound their steps and keep their figures alike.
_bench = _load("tools/bench.py", "monstack_bench_for_series")
BenchError = _bench.BenchError
machine_facts = _bench.machine_facts
render_machine = _bench.render_machine


# ---------------------------------------------------------------------------------------------
# Pure parts (tests/unit/test_series_bench.py)

SAMPLE_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every sample of a Prometheus text-format body; comments skipped.

    Raises ValueError naming the line when a line is not a sample."""
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = SAMPLE_LINE.match(line)
        if not match:
            raise ValueError(f"line {number} is not a sample: {line[:120]!r}")
        name, labels_text, value = match.groups()
        labels = {}
        if labels_text:
            position = 0
            for label in LABEL.finditer(labels_text):
                if label.start() != position:
                    break
                labels[label.group(1)] = label.group(2)
                position = label.end()
            if position != len(labels_text):
                raise ValueError(f"line {number} has malformed labels: {line[:120]!r}")
        samples.append((name, labels, float(value)))
    return samples


def metric_sum(samples: list[tuple[str, dict, float]], name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` whose labels include `labels`; None when there is none."""
    values = [value for sample_name, sample_labels, value in samples
              if sample_name == name and all(sample_labels.get(key) == want for key, want in labels.items())]
    return sum(values) if values else None


def cpu_seconds(stat: str, ticks_per_second: int = 100) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds (the fields after the command's parenthesis)."""
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def rss_bytes(status: str) -> int:
    """VmRSS of a /proc/<pid>/status text, in bytes."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS line")


def per_100k(value: float, series: float) -> float:
    """`value` for `series` active series, scaled to 100k series (an average: fixed costs included)."""
    if series <= 0:
        raise ValueError("series must be positive")
    return value * PER / series


def window_figures(kind: str, start: dict, end: dict, rss_samples: list[int],
                   kept_bytes_per_sample: float | None = None) -> dict:
    """One daemon's figures over a window, from its readings at the start and at the end.

    A reading is {time, cpu, rss, samples (counter), series, disk (bytes)}; rss_samples are RSS readings
    taken in the window (the largest is reported). The disk a day costs comes from what the daemon
    keeps per sample (kept_bytes_per_sample, when it can say) at the measured ingestion rate, not from
    the directory's growth in a short window, which merges and compactions make jump both ways."""
    seconds = end["time"] - start["time"]
    if seconds <= 0:
        raise ValueError("the window must have a positive length")
    appended = end["samples"] - start["samples"]
    if appended < 0:
        raise ValueError(f"{kind}: the ingestion counter went backwards (a restart in the window?)")
    grown = end["disk"] - start["disk"]
    series = end["series"]
    cores = (end["cpu"] - start["cpu"]) / seconds
    rss = max(rss_samples + [end["rss"]])
    figures = {
        "kind": kind,
        "window_s": round(seconds, 1),
        "series": int(series),
        "samples_per_s": round(appended / seconds, 1),
        "cpu_cores": round(cores, 4),
        "rss_bytes": rss,
        "disk_growth_bytes": grown,
        "disk_bytes_per_sample": round(grown / appended, 3) if appended else None,
        "kept_bytes_per_sample": None if kept_bytes_per_sample is None else round(kept_bytes_per_sample, 3),
        "disk_gib_per_100k_per_day": None,
    }
    if series > 0:
        figures.update({
            "cpu_cores_per_100k": round(per_100k(cores, series), 4),
            "rss_mib_per_100k": round(per_100k(rss, series) / 2**20, 1),
        })
        if kept_bytes_per_sample is not None:
            daily = kept_bytes_per_sample * appended / seconds * DAY
            figures["disk_gib_per_100k_per_day"] = round(per_100k(daily, series) / 2**30, 3)
    return figures


def vm_kept_bytes_per_row(samples: list[tuple[str, dict, float]]) -> float | None:
    """VictoriaMetrics's own account of its storage: bytes of its data parts (vm_data_size_bytes of
    the storage/* types, the index left out) per row they hold (vm_rows of the same types)."""
    size = sum(value for name, labels, value in samples
               if name == "vm_data_size_bytes" and labels.get("type", "").startswith("storage/"))
    rows = sum(value for name, labels, value in samples
               if name == "vm_rows" and labels.get("type", "").startswith("storage/"))
    return size / rows if rows else None


def marginal(small: dict, large: dict, key: str) -> float | None:
    """What 100k more series add to `key` between two sizes (the slope; fixed costs cancel out)."""
    added = large["series"] - small["series"]
    if added <= 0:
        return None
    return (large[key] - small[key]) * PER / added


def growth(rows: list[dict]) -> list[dict]:
    """Per daemon, the marginal cost of 100k series between the smallest and the largest size measured."""
    found = []
    for host in sorted({row["host"] for row in rows}):
        measured = sorted((row for row in rows if row["host"] == host), key=lambda row: row["series"])
        if len(measured) < 2:
            continue
        small, large = measured[0], measured[-1]
        cpu = marginal(small, large, "cpu_cores")
        rss = marginal(small, large, "rss_bytes")
        rate = marginal(small, large, "samples_per_s")
        found.append({
            "host": host, "kind": small["kind"], "daemon": small.get("daemon", small["kind"]), "from_series": small["series"], "to_series": large["series"],
            "cpu_cores_per_100k": None if cpu is None else round(cpu, 4),
            "rss_mib_per_100k": None if rss is None else round(rss / 2**20, 1),
            "samples_per_s_per_100k": None if rate is None else round(rate, 1),
        })
    return found


def scrape_configs(target: str) -> list[dict]:
    """The synthetic job, in Prometheus's own scrape_config form (prometheus_scrape_configs_extra)."""
    return [{"job_name": "synthetic", "scheme": "http", "static_configs": [{"targets": [target]}]}]


def inventory() -> dict:
    """The pair in group prometheus, VictoriaMetrics on its own host, reached through docker exec."""
    return {"all": {
        "vars": {"ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3"},
        "hosts": {name: {"bench_image": image} for name, image in HOSTS.items()},
        "children": {"prometheus": {"hosts": {name: None for name in PAIR}},
                     "victoriametrics": {"hosts": {VM: None}}},
    }}


def group_vars() -> dict[str, dict]:
    """The generated inventory's group_vars: names for addresses (as molecule/ha), the synthetic job,
    and the exporter's port opened to the pair only."""
    return {
        "all": {"monitoring_environment": "bench", "monitoring_address": "{{ inventory_hostname }}"},
        "prometheus": {"prometheus_scrape_configs_extra": scrape_configs(f"{VM}:{EXPORTER_PORT}")},
        "victoriametrics": {"firewall_rules_extra": [
            {"port": EXPORTER_PORT, "sources": ["prometheus"], "comment": "synthetic series of the series bench"}]},
    }


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_tables(results: dict) -> str:
    lines = ["| synthetic series | host | daemon | active series | samples/s ingested | CPU cores "
             "| CPU cores per 100k | RSS MiB (max) | RSS MiB per 100k | written bytes per sample (window) "
             "| kept bytes per sample | disk GiB per 100k series per day | remote_write behind s |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["rows"]:
        lines.append(
            f"| {row['size']:,} | {row['host']} | {row['daemon']} | {row['series']:,} | {_number(row['samples_per_s'])} "
            f"| {row['cpu_cores']:.3f} | {_number(row.get('cpu_cores_per_100k'), 3)} | {row['rss_bytes'] / 2**20:,.0f} "
            f"| {_number(row.get('rss_mib_per_100k'))} | {_number(row['disk_bytes_per_sample'], 2)} "
            f"| {_number(row.get('kept_bytes_per_sample'), 2)} | {_number(row.get('disk_gib_per_100k_per_day'), 2)} "
            f"| {_number(row.get('remote_write_lag_s'), 1)} |")
    if results.get("growth"):
        lines += ["", "What 100k more series add (between the smallest and the largest size; fixed costs cancel):", "",
                  "| host | daemon | from - to series | CPU cores | RSS MiB | samples/s |", "|---|---|---|---:|---:|---:|"]
        for row in results["growth"]:
            lines.append(f"| {row['host']} | {row['daemon']} | {row['from_series']:,} - {row['to_series']:,} "
                         f"| {_number(row['cpu_cores_per_100k'], 3)} | {_number(row['rss_mib_per_100k'])} "
                         f"| {_number(row['samples_per_s_per_100k'])} |")
    if results.get("exporter"):
        lines += ["", "The synthetic exporter itself (one Python process on sbench-vm): "
                  + ", ".join(f"{size:,} series {cores:.3f} cores" for size, cores in results["exporter"].items()) + "."]
    return "\n".join(lines)


def render_section(results: dict) -> str:
    return _bench.render_marked_section(
        results, f"Measured {results['finished']} with `{results['command']}` ({results['elapsed']:.0f} s in all; "
                 f"warm-up {results['warmup']:.0f} s and window {results['window']:.0f} s per size; other containers "
                 f"running beside the bench at the start: {results['machine']['other_containers']}).",
        render_tables(results), MARK_BEGIN, MARK_END)


def merge_document(existing: str | None, section: str) -> str:
    """Put the generated section between its markers, keeping what is written around it."""
    return _bench.merge_document(existing, section, MARK_BEGIN, MARK_END)


# ---------------------------------------------------------------------------------------------
# The run


class SeriesBench(_bench.BoundedRuns):
    step_limits = STEP_LIMITS
    workdir_prefix = "monstack-sbench-"

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.started_hosts = False
        self.rows: list[dict] = []
        self.exporter_cpu: dict[int, float] = {}
        self.versions: dict[str, str] = {}

    def sleep(self, seconds: float, step: str) -> None:
        """Sleep, but never past the deadline."""
        time.sleep(max(0.0, min(seconds, self.remaining(step) - 5)))

    def playbook(self, step: str, playbook: str, name: str, extra: list[str] | None = None) -> float:
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), playbook] + (extra or [])
        return self.run(step, argv, name, env={"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"})[0]

    def docker(self, *argv: str, stdin: str | None = None, step: str = "exec") -> str:
        try:
            done = subprocess.run(["docker", *argv], input=stdin, capture_output=True, text=True,
                                  timeout=self.remaining(step), check=False)
        except subprocess.TimeoutExpired:
            raise BenchError(f"docker {' '.join(argv[:3])}: no answer within the step's bound") from None
        if done.returncode != 0:
            raise BenchError(f"docker {' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
        return done.stdout

    # -- hosts and stack
    def write_inventory(self) -> None:
        (self.inventory / "group_vars").mkdir(parents=True)
        (self.inventory / "hosts.yml").write_text("---\n" + json.dumps(inventory(), indent=2) + "\n")
        for group, values in group_vars().items():
            (self.inventory / "group_vars" / f"{group}.yml").write_text("---\n" + json.dumps(values, indent=2) + "\n")

    def start(self) -> None:
        self.write_inventory()
        self.started_hosts = True
        seconds = self.playbook("hosts", "tools/bench/hosts.yml", "hosts", extra=[
            "-e", f"testbench_network={NETWORK}", "-e", f"testbench_subnet={SUBNET}", "-e", f"testbench_gateway={GATEWAY}"])
        print(f"series-bench: hosts up in {seconds:.0f} s", flush=True)
        seconds = self.playbook("converge", "tools/series_bench/stack.yml", "converge")
        print(f"series-bench: Prometheus pair and VictoriaMetrics converged in {seconds:.0f} s", flush=True)
        self.password = (self.workdir / "pki" / "inventory" / "scrape-password").read_text().split()[0]
        self.docker("cp", str(HERE / "exporter.py"), f"{VM}:/usr/local/bin/sbench_exporter.py")
        for host in (*PAIR, VM):
            binary = "prometheus" if host in PAIR else "victoria-metrics"
            self.versions[host] = self.docker("exec", host, "dpkg-query", "-W", "-f", "${Version}", binary).strip()

    def serve(self, size: int) -> None:
        """(Re)start the synthetic exporter with `size` series and wait until it answers."""
        self.docker("exec", VM, "sh", "-c", f"systemctl stop {EXPORTER_UNIT} 2>/dev/null; "
                    f"systemctl reset-failed {EXPORTER_UNIT} 2>/dev/null; true")
        self.docker("exec", VM, "systemd-run", "--unit", EXPORTER_UNIT, "--property", "Restart=no",
                    "/usr/bin/python3", "/usr/local/bin/sbench_exporter.py", "--series", str(size),
                    "--port", str(EXPORTER_PORT))
        deadline = time.monotonic() + self.remaining("exporter")
        while time.monotonic() < deadline:
            answer = subprocess.run(["docker", "exec", VM, "curl", "-sf", "--max-time", "5",
                                     f"http://127.0.0.1:{EXPORTER_PORT}/ready"],
                                    capture_output=True, text=True, timeout=30, check=False)
            if answer.returncode == 0 and answer.stdout.strip() == f"series {size}":
                return
            time.sleep(2)
        raise BenchError(f"the synthetic exporter did not answer with {size} series within "
                         f"{STEP_LIMITS['exporter']} s (docker exec {VM} journalctl -u {EXPORTER_UNIT})")

    # -- readings
    def reading(self, host: str) -> dict:
        """One reading of the daemon on `host`: CPU, RSS, data directory size, its own counters. One
        docker exec; the stack's password goes in on stdin (a curl config), never on a command line."""
        kind = "prometheus" if host in PAIR else "victoriametrics"
        daemon = DAEMONS[kind]
        script = (f"pid=$(systemctl show -p MainPID --value {daemon['unit']}); "
                  f"cat /proc/$pid/stat; echo '--8<--'; cat /proc/$pid/status; echo '--8<--'; "
                  f"du -sb {daemon['data']} | cut -f1; echo '--8<--'; "
                  f"curl -sf --max-time 20 --cacert {CA_FILE} -K - {daemon['url']}")
        stamp = time.monotonic()
        out = self.docker("exec", "-i", host, "sh", "-c", script,
                          stdin=f'user = "prometheus:{self.password}"\n')
        stat, status, disk, metrics = out.split("--8<--\n", 3)
        samples = parse_metrics(metrics)
        if kind == "prometheus":
            counter = metric_sum(samples, "prometheus_tsdb_head_samples_appended_total")
            series = metric_sum(samples, "prometheus_tsdb_head_series")
        else:
            counter = metric_sum(samples, "vm_rows_inserted_total")
            series = metric_sum(samples, "vm_cache_entries", type="storage/hour_metric_ids")
        if counter is None or series is None:
            raise BenchError(f"{host}: its /metrics lacks the ingestion counter or the series gauge")
        return {"time": stamp, "cpu": cpu_seconds(stat), "rss": rss_bytes(status), "disk": int(disk.strip()),
                "samples": counter, "series": series, "metrics": samples}

    def exporter_cpu_seconds(self) -> float:
        stat = self.docker("exec", VM, "sh", "-c",
                           f"cat /proc/$(systemctl show -p MainPID --value {EXPORTER_UNIT})/stat")
        return cpu_seconds(stat)

    def wait_for_series(self, size: int) -> None:
        """Until both Prometheus hold the synthetic series (their heads at least `size`) and
        VictoriaMetrics has seen them too; bounded."""
        deadline = time.monotonic() + self.remaining("series")
        while time.monotonic() < deadline:
            heads = {host: self.reading(host)["series"] for host in (*PAIR, VM)}
            if all(count >= size for count in heads.values()):
                return
            time.sleep(5)
        raise BenchError(f"the series did not reach {size} within {STEP_LIMITS['series']} s: {heads}")

    def measure_size(self, size: int) -> None:
        started = time.monotonic()
        self.serve(size)
        self.wait_for_series(size)
        print(f"series-bench: {size:,} series held after {time.monotonic() - started:.0f} s; "
              f"warming up {self.args.warmup:.0f} s", flush=True)
        self.sleep(self.args.warmup, "series")
        hosts = (*PAIR, VM)
        start = {host: self.reading(host) for host in hosts}
        exporter_start = (time.monotonic(), self.exporter_cpu_seconds())
        rss: dict[str, list[int]] = {host: [] for host in hosts}
        end_at = time.monotonic() + self.args.window
        for _ in range(int(self.args.window // SCRAPE_INTERVAL) + 1):
            left = end_at - time.monotonic()
            if left <= 0:
                break
            self.sleep(min(SCRAPE_INTERVAL, left), "series")
            if time.monotonic() < end_at - 1:
                for host in hosts:
                    rss[host].append(self.reading(host)["rss"])
        end = {host: self.reading(host) for host in hosts}
        exporter_end = (time.monotonic(), self.exporter_cpu_seconds())
        self.exporter_cpu[size] = round((exporter_end[1] - exporter_start[1]) / (exporter_end[0] - exporter_start[0]), 4)
        for host in hosts:
            kind = "prometheus" if host in PAIR else "victoriametrics"
            kept = vm_kept_bytes_per_row(end[host]["metrics"]) if kind == "victoriametrics" else None
            row = window_figures(kind, start[host], end[host], rss[host], kept)
            row.update({"size": size, "host": host, "daemon": f"{kind} {self.versions.get(host, '')}".strip()})
            row.update(self.health(host, kind, start[host]["metrics"], end[host]["metrics"]))
            self.rows.append(row)
            print(f"series-bench: {size:,} {host}: {row['series']:,} series, {row['samples_per_s']:,.0f} samples/s, "
                  f"{row['cpu_cores']:.3f} cores, {row['rss_bytes'] / 2**20:,.0f} MiB, "
                  f"{row['disk_growth_bytes']:,} bytes grown", flush=True)

    @staticmethod
    def health(host: str, kind: str, start: list, end: list) -> dict:
        """Whether the daemon kept up: remote_write failures and lag (Prometheus), rows refused (VM)."""
        if kind == "prometheus":
            failed = [metric_sum(samples, "prometheus_remote_storage_samples_failed_total") or 0.0
                      for samples in (start, end)]
            highest = metric_sum(end, "prometheus_remote_storage_highest_timestamp_in_seconds")
            sent = metric_sum(end, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
            lag = None if highest is None or sent is None else round(highest - sent, 1)
            return {"remote_write_failed": failed[1] - failed[0], "remote_write_lag_s": lag}
        dropped = [sum(value for name, _, value in samples if name in (
            "vm_rows_ignored_total", "vm_too_long_lines_skipped_total")) for samples in (start, end)]
        return {"rows_ignored": dropped[1] - dropped[0]}

    def measure(self) -> None:
        self.start()
        for size in self.args.sizes:
            self.measure_size(size)

    def cleanup(self) -> None:
        """Remove exactly the containers and network this run made. Bounded; never raises."""
        if not self.started_hosts:
            return
        try:
            subprocess.run(["docker", "rm", "--force", *HOSTS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=STEP_LIMITS["cleanup"], check=False)
            subprocess.run(["docker", "network", "rm", NETWORK], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=STEP_LIMITS["cleanup"], check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"series-bench: cleanup incomplete ({error}); remove {', '.join(HOSTS)} and {NETWORK} by hand",
                  file=sys.stderr)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="5k series, 30 s warm-up and window, results to /tmp (a try-out)")
    parser.add_argument("--sizes", help="comma-separated series counts, measured in increasing order "
                                        "(default 50000,200000,500000)")
    parser.add_argument("--warmup", type=float, help="seconds after the series are held, before the window (default 90)")
    parser.add_argument("--window", type=float, help="seconds of each measurement window (default 120)")
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds for the whole run (default 1200)")
    parser.add_argument("--json", type=Path, help="results file (default docs/series_benchmark.json)")
    parser.add_argument("--markdown", type=Path, help="Markdown file (default docs/benchmark.md)")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",") if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    args.sizes = sorted({int(size) for size in sizes})
    if args.sizes[0] < 1 or args.sizes[-1] > 1_000_000:
        parser.error("--sizes: each from 1 to 1000000")
    args.warmup = args.warmup if args.warmup is not None else (30.0 if args.quick else 90.0)
    args.window = args.window if args.window is not None else (30.0 if args.quick else 120.0)
    if args.warmup < 0 or args.window < SCRAPE_INTERVAL or args.deadline <= 0:
        parser.error(f"--warmup must be >= 0, --window >= {SCRAPE_INTERVAL}, --deadline positive")
    default_dir = Path(tempfile.gettempdir()) if args.quick else REPO / "docs"
    args.json = args.json or default_dir / ("monstack-series-bench-quick.json" if args.quick else "series_benchmark.json")
    args.markdown = args.markdown or default_dir / ("monstack-series-bench-quick.md" if args.quick else "benchmark.md")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = "make bench-series" + (f" SERIES_BENCH_ARGS={shlex.quote(' '.join(argv))}" if argv else "")
    machine = machine_facts()
    bench = SeriesBench(args)
    started = time.monotonic()
    print(f"series-bench: work directory {bench.workdir}; sizes {args.sizes}; at most {args.deadline:.0f} s",
          flush=True)
    failure = _bench.measure_within_bounds(bench, "series-bench")
    if failure is None:
        return 130
    if failure and not bench.rows:
        return 1
    results = {
        **_bench.results_header(command, machine, started, failure),
        "sizes": args.sizes,
        "warmup": args.warmup,
        "window": args.window,
        "scrape_interval": SCRAPE_INTERVAL,
        "versions": bench.versions,
        "rows": bench.rows,
        "growth": growth(bench.rows),
        "exporter": bench.exporter_cpu,
    }
    _bench.write_results(args, results, render_section(results), render_tables(results), merge_document)
    print(f"series-bench: wrote {args.json} and {args.markdown}")
    if failure:
        return 1
    shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
