"""tools/series_bench.py's pure parts: the synthetic exporter's bodies (valid exposition format, as
promtool and the tool's own parser read it, with values that change), the readings' parsing and the
arithmetic of the figures per 100k series, and the generated inventory and document section."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, load_module

exporter = load_module("tools/series_bench/exporter.py", "monstack_series_exporter")
series_bench = load_module("tools/series_bench.py", "monstack_series_bench_tool")
PROMTOOL = Path(sys.executable).parent / "promtool"


def test_the_exporter_serves_exactly_the_series_asked_for_each_once():
    samples = series_bench.parse_metrics(exporter.render(2_345, 0))
    keys = {(name, labels["series"]) for name, labels, _ in samples}
    assert len(samples) == len(keys) == 2_345
    assert {name for name, _ in keys} == {exporter.metric_name(family) for family in range(exporter.FAMILIES)}
    assert {labels["series"] for _, labels, _ in samples} == {f"{index:07d}" for index in range(2_345)}


def test_a_larger_size_keeps_every_series_of_a_smaller_one_so_stepping_up_churns_nothing():
    def keys(size):
        return {(name, tuple(sorted(labels.items()))) for name, labels, _ in
                series_bench.parse_metrics(exporter.render(size, 0))}
    small, large = keys(5_000), keys(12_345)
    assert small < large and len(large - small) == 12_345 - 5_000


def test_the_exporter_body_is_valid_exposition_format_for_promtool():
    if not PROMTOOL.exists():
        pytest.skip(f"{PROMTOOL} missing: make .venv/bin/promtool")
    done = subprocess.run([str(PROMTOOL), "check", "metrics"], input=exporter.render(3_000, 1), text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_series_changes_value_from_one_body_to_the_next():
    bodies = [dict(((name, labels["series"]), value) for name, labels, value in
                   series_bench.parse_metrics(exporter.render(1_000, variant))) for variant in range(exporter.VARIANTS)]
    for first, second in zip(bodies, bodies[1:] + bodies[:1]):
        assert first.keys() == second.keys()
        assert all(first[key] != second[key] for key in first)


def test_the_exporter_hands_out_its_bodies_in_turn_with_a_gzip_copy_of_each():
    bodies = exporter.Bodies(50, variants=2)
    first, second, third = bodies.next(), bodies.next(), bodies.next()
    assert first != second and first == third
    assert gzip.decompress(first[1]) == first[0] == exporter.render(50, 0).encode()


def test_fewer_series_than_families_still_renders_every_series():
    samples = series_bench.parse_metrics(exporter.render(3, 0))
    assert len(samples) == 3
    with pytest.raises(ValueError):
        exporter.render(0, 0)


def test_parse_metrics_reads_labels_escapes_and_sums_by_label():
    text = ('# HELP x help\nprometheus_tsdb_head_samples_appended_total{type="float"} 10\n'
            'prometheus_tsdb_head_samples_appended_total{type="histogram"} 2\n'
            'vm_cache_entries{type="storage/hour_metric_ids"} 5.5e+04\n'
            'odd{path="a\\"b,c",x="1"} 3 1700000000000\nplain 1\n')
    samples = series_bench.parse_metrics(text)
    assert series_bench.metric_sum(samples, "prometheus_tsdb_head_samples_appended_total") == 12
    assert series_bench.metric_sum(samples, "vm_cache_entries", type="storage/hour_metric_ids") == 55_000
    assert series_bench.metric_sum(samples, "odd") == 3 and samples[3][1] == {"path": 'a\\"b,c', "x": "1"}
    assert series_bench.metric_sum(samples, "missing") is None


@pytest.mark.parametrize("line", ["not a sample at all", 'bad{label=unquoted} 1', "name{} "])
def test_parse_metrics_names_a_line_that_is_not_a_sample(line):
    with pytest.raises(ValueError, match="line 1"):
        series_bench.parse_metrics(line)


def test_cpu_and_memory_come_from_proc():
    stat = "123 (prometheus (x)) S 1 123 123 0 -1 4194560 1 0 0 0 250 150 0 0 20 0 12 0 100 0 0"
    assert series_bench.cpu_seconds(stat) == 4.0
    assert series_bench.rss_bytes("Name:\tprometheus\nVmRSS:\t  2048 kB\n") == 2 * 2**20


def reading(at, cpu, samples, disk, series, rss=100 * 2**20):
    return {"time": at, "cpu": cpu, "samples": samples, "disk": disk, "series": series, "rss": rss}


def test_window_figures_give_rates_per_100k_series_and_a_day_of_disk():
    start = reading(0.0, 10.0, 1_000_000, 5_000_000, 200_000)
    end = reading(100.0, 30.0, 2_333_333, 7_666_666, 200_000, rss=900 * 2**20)
    figures = series_bench.window_figures("prometheus", start, end, [1000 * 2**20, 800 * 2**20])
    assert figures["samples_per_s"] == pytest.approx(13_333.3, abs=0.1)
    assert figures["cpu_cores"] == 0.2
    assert figures["cpu_cores_per_100k"] == 0.1
    assert figures["rss_bytes"] == 1000 * 2**20 and figures["rss_mib_per_100k"] == 500.0
    assert figures["disk_bytes_per_sample"] == pytest.approx(2.0, abs=0.001)
    # Nothing kept per sample said: no day of disk is made up from a short window's growth.
    assert figures["disk_gib_per_100k_per_day"] is None and figures["kept_bytes_per_sample"] is None


def test_a_day_of_disk_is_what_is_kept_per_sample_at_the_measured_rate():
    start = reading(0.0, 0.0, 0, 0, 200_000)
    end = reading(100.0, 1.0, 2_666_666, -500_000, 200_000)
    figures = series_bench.window_figures("victoriametrics", start, end, [], kept_bytes_per_sample=0.5)
    # 26,666.66 samples/s for 200k series: 13,333.33 per 100k, half a byte each, times a day.
    assert figures["disk_gib_per_100k_per_day"] == pytest.approx(13_333.33 * 0.5 * 86_400 / 2**30, abs=0.001)
    assert figures["disk_bytes_per_sample"] < 0, "a merge in the window shrinks the directory: shown as measured"


def test_victoriametrics_kept_bytes_per_row_leave_the_index_out():
    samples = series_bench.parse_metrics(
        'vm_data_size_bytes{type="storage/small"} 300\nvm_data_size_bytes{type="storage/big"} 100\n'
        'vm_data_size_bytes{type="indexdb/file"} 9999\nvm_rows{type="storage/small"} 600\n'
        'vm_rows{type="storage/big"} 200\nvm_rows{type="indexdb/file"} 50\n')
    assert series_bench.vm_kept_bytes_per_row(samples) == 0.5
    assert series_bench.vm_kept_bytes_per_row([]) is None


def test_window_figures_refuse_an_empty_window_and_a_counter_gone_backwards():
    with pytest.raises(ValueError):
        series_bench.window_figures("prometheus", reading(5, 0, 0, 0, 1), reading(5, 0, 0, 0, 1), [])
    with pytest.raises(ValueError, match="backwards"):
        series_bench.window_figures("prometheus", reading(0, 0, 10, 0, 1), reading(5, 0, 5, 0, 1), [])


def test_growth_is_the_slope_between_the_smallest_and_largest_size_so_fixed_costs_cancel():
    rows = [
        {"host": "p1", "kind": "prometheus", "daemon": "prometheus 2.53", "series": 50_000, "cpu_cores": 0.15,
         "rss_bytes": 400 * 2**20, "samples_per_s": 3_400.0},
        {"host": "p1", "kind": "prometheus", "daemon": "prometheus 2.53", "series": 250_000, "cpu_cores": 0.35,
         "rss_bytes": 1200 * 2**20, "samples_per_s": 16_733.0},
        {"host": "p1", "kind": "prometheus", "daemon": "prometheus 2.53", "series": 150_000, "cpu_cores": 9.0,
         "rss_bytes": 1, "samples_per_s": 1.0},
        {"host": "vm", "kind": "victoriametrics", "daemon": "victoriametrics", "series": 50_000, "cpu_cores": 0.1,
         "rss_bytes": 1, "samples_per_s": 1.0},
    ]
    (row,) = series_bench.growth(rows)
    assert (row["host"], row["from_series"], row["to_series"]) == ("p1", 50_000, 250_000)
    assert row["cpu_cores_per_100k"] == 0.1 and row["rss_mib_per_100k"] == 400.0
    assert row["samples_per_s_per_100k"] == pytest.approx(6_666.5, abs=0.1)


def test_the_inventory_is_a_pair_writing_to_victoriametrics_with_the_exporter_port_open_to_the_pair_only():
    hosts = series_bench.inventory()["all"]
    assert set(hosts["children"]["prometheus"]["hosts"]) == set(series_bench.PAIR)
    assert set(hosts["children"]["victoriametrics"]["hosts"]) == {series_bench.VM}
    assert all(name.startswith("sbench-") for name in hosts["hosts"])
    values = series_bench.group_vars()
    (job,) = values["prometheus"]["prometheus_scrape_configs_extra"]
    assert job["static_configs"] == [{"targets": [f"sbench-vm:{series_bench.EXPORTER_PORT}"]}]
    (rule,) = values["victoriametrics"]["firewall_rules_extra"]
    assert (rule["port"], rule["sources"]) == (series_bench.EXPORTER_PORT, ["prometheus"])


def test_the_network_is_its_own_and_away_from_the_lab_and_molecule_ranges():
    taken = set()
    for path in [REPO_ROOT / "inventories" / "lab" / "group_vars" / "all.yml",
                 *sorted((REPO_ROOT / "molecule").glob("*/molecule.yml"))]:
        taken.update(word.strip("'\"[],") for word in path.read_text().split() if word.count(".") == 3 and "/" in word)
    assert series_bench.SUBNET not in taken, taken
    assert series_bench.NETWORK not in ("monstack-bench",)


def test_the_section_replaces_only_its_own_markers_and_keeps_the_other_bench_section():
    document = ("# Benchmark\n\nintro\n<!-- bench:begin (x) -->\nold bench\n<!-- bench:end -->\n\n"
                f"{series_bench.MARK_BEGIN}\nold series\n{series_bench.MARK_END}\nafter\n")
    merged = series_bench.merge_document(document, f"{series_bench.MARK_BEGIN}\nnew\n{series_bench.MARK_END}")
    assert "old bench" in merged and "old series" not in merged and "new" in merged and merged.endswith("after\n")
    appended = series_bench.merge_document("# Benchmark\n\nbody\n", "SECTION")
    assert appended == "# Benchmark\n\nbody\n\nSECTION\n"


def test_the_table_renders_every_row_and_the_growth():
    row = {"size": 50_000, "host": "sbench-p1", "daemon": "prometheus 2.53", "series": 51_234, "samples_per_s": 3_400.0,
           "cpu_cores": 0.15, "cpu_cores_per_100k": 0.29, "rss_bytes": 400 * 2**20, "rss_mib_per_100k": 780.0,
           "disk_bytes_per_sample": 1.5, "kept_bytes_per_sample": None, "disk_gib_per_100k_per_day": None,
           "remote_write_lag_s": 2.0}
    growth = [{"host": "sbench-p1", "daemon": "prometheus 2.53", "from_series": 51_234, "to_series": 201_234,
               "cpu_cores_per_100k": 0.1, "rss_mib_per_100k": 400.0, "samples_per_s_per_100k": 6_666.0}]
    text = series_bench.render_tables({"rows": [row], "growth": growth, "exporter": {50_000: 0.02}})
    assert "| 50,000 | sbench-p1 | prometheus 2.53 | 51,234 | 3,400 | 0.150 | 0.290 | 400 | 780 | 1.50 | - | - | 2.0 |" in text
    assert "| sbench-p1 | prometheus 2.53 | 51,234 - 201,234 | 0.100 | 400 | 6,666 |" in text
    assert "50,000 series 0.020 cores" in text
