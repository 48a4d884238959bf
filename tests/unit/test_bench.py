"""tools/bench.py's pure parts (statistics, aggregation, tables) and its callback plugin end to end on
localhost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT, load_module

bench = load_module("tools/bench.py", "monstack_bench_tool")


def record(host="h1", task="t", action="ansible.builtin.template", status="ok", items=None, items_skipped=0,
           delegated="", started=0.0, finished=1.0, role="r"):
    return {"host": host, "task": task, "role": role, "action": action, "handler": False, "status": status,
            "items": items, "items_skipped": items_skipped, "delegated_connection": delegated,
            "started": started, "finished": finished}


def test_summarize_gives_median_min_and_max_of_the_runs():
    assert bench.summarize([3.0, 1.0, 2.0]) == {"runs": 3, "median": 2.0, "min": 1.0, "max": 3.0,
                                                "values": [3.0, 1.0, 2.0]}
    assert bench.summarize([1.0, 2.0])["median"] == 1.5


def test_summarize_refuses_no_runs():
    with pytest.raises(ValueError):
        bench.summarize([])


@pytest.mark.parametrize(("rec", "calls"), [
    (record(), 1),
    (record(status="skipped"), 0),
    (record(action="ansible.builtin.set_fact"), 0),
    (record(action="ansible.builtin.validate_argument_spec"), 0),
    (record(action="community.crypto.x509_certificate", delegated="local"), 0),
    (record(action="ansible.builtin.file", items=4, items_skipped=1), 3),
    (record(action="monstack_state"), 1),
    (record(status="changed"), 1),
])
def test_module_runs_on_the_host_count_items_and_leave_out_controller_work(rec, calls):
    assert bench.host_calls(rec) == calls


def test_aggregate_counts_results_per_host_and_times_a_task_once_per_run():
    records = [
        record(host="a", task="write", started=10.0, finished=11.0),
        record(host="b", task="write", started=10.0, finished=12.5),
        record(host="a", task="check", action="assert", started=12.5, finished=12.6),
        record(host="b", task="skip me", status="skipped", started=12.6, finished=12.7),
        record(host="a", task="dirs", action="file", items=3, started=12.7, finished=14.0),
    ]
    summary = bench.aggregate(records, execs={"a": 9})
    assert summary["hosts"]["a"] == {"tasks": 3, "ok": 3, "changed": 0, "skipped": 0, "failed": 0, "ignored": 0,
                                     "unreachable": 0, "on_host": 2, "on_controller": 1, "module_runs": 4,
                                     "docker_execs": 9}
    assert summary["hosts"]["b"]["skipped"] == 1 and summary["hosts"]["b"]["docker_execs"] == 0
    assert summary["changed"] == 0 and summary["failed"] == 0
    first = summary["top_by_time"][0]
    assert (first["task"], first["seconds"], first["runs"], first["results"]) == ("write", 2.5, 1, 2)
    assert summary["top_by_module_runs"][0]["task"] == "dirs"


def test_aggregate_counts_changed_and_failed_results():
    summary = bench.aggregate([record(status="changed"), record(host="h2", status="unreachable")])
    assert summary["changed"] == 1 and summary["failed"] == 1


def test_count_execs_keeps_only_the_bench_hosts():
    lines = ["bench-monitor", "other-molecule-host", "bench-monitor\n", "bench-web", ""]
    assert bench.count_execs(lines, ["bench-monitor", "bench-web", "bench-db"]) == {
        "bench-monitor": 2, "bench-web": 1, "bench-db": 0}


def test_stack_inventory_has_the_lab_shape():
    inventory = bench.stack_inventory()["all"]
    assert list(inventory["hosts"]) == ["bench-monitor", "bench-web", "bench-db"]
    assert inventory["vars"]["ansible_connection"] == "community.docker.docker"
    children = {group: sorted(value["hosts"]) for group, value in inventory["children"].items()}
    assert children == {"nginx": ["bench-db", "bench-web"], "redis": ["bench-web"], "postgres": ["bench-db"],
                        "prometheus": ["bench-monitor"], "alertmanager": ["bench-monitor"],
                        "blackbox": ["bench-monitor"]}


def test_fleet_inventory_adds_node_exporter_only_targets_on_both_releases():
    inventory = bench.fleet_inventory(5)["all"]
    nodes = [name for name in inventory["hosts"] if name != "bench-monitor"]
    assert nodes == [f"bench-node0{index}" for index in range(1, 6)]
    assert {inventory["hosts"][name]["bench_image"] for name in nodes} == set(bench.IMAGES)
    assert all(name not in members["hosts"] for members in inventory["children"].values() for name in nodes)


def figures(noop=20.0, floor=4.0, fleet=(1, 20), fleet_noops=(10.0, 30.0), changed=0):
    result = {"noop_stack": {"median": noop, "changed": changed}, "floor_stack": {"median": floor, "changed": 0}}
    for size, value in zip(fleet, fleet_noops):
        result[f"noop_fleet_{size}"] = {"median": value, "changed": 0}
    return result


def test_criteria_hold_within_the_issue_limits():
    rows = bench.criteria(figures())
    assert [row["measured"] for row in rows] == ["5.00x", "3.00x", "0"]
    assert all(row["holds"] for row in rows)


def test_criteria_fail_on_a_slow_rerun_steep_growth_or_a_change():
    rows = bench.criteria(figures(noop=40.0, fleet_noops=(10.0, 60.0), changed=2))
    assert [row["holds"] for row in rows] == [False, False, False]


def results_for_render():
    summary = bench.aggregate([record(host="bench-web", task="Write the unit", started=0.0, finished=0.7)])
    return {
        "figures": {
            "noop_stack": {"hosts": 3, "runs": 3, "median": 20.0, "min": 19.0, "max": 23.5, "changed": 0},
            "floor_stack": {"hosts": 3, "runs": 3, "median": 4.0, "min": 3.9, "max": 4.2, "changed": 0},
            "noop_fleet_20": {"hosts": 21, "runs": 3, "median": 40.0, "min": 38.0, "max": 41.0, "changed": 0},
        },
        "criteria": bench.criteria(figures(noop=20.0, floor=2.0)),
        "breakdown": {"noop_stack": summary},
        "machine": {"nproc": 2, "memory": "23.5 GiB", "cpu": "AMD EPYC", "docker": "20.10", "ansible_core": "2.19.14",
                    "python": "3.11.7", "load_before": "1.00", "load_after": "2.00", "other_containers": 3},
        "finished": "2026-01-01 00:00 UTC", "command": "make bench", "elapsed": 600.0,
    }


def test_render_tables_lists_every_figure_criterion_and_host():
    text = bench.render_tables(results_for_render())
    assert "| no-op rerun of site.yml, full stack | 3 | 3 | 20.00 | 19.00 | 23.50 | 0 |" in text
    assert "| no-op rerun, monitoring host + 20 node_exporter targets | 21 |" in text
    assert "| **no** |" in text  # 10x the floor
    assert "| bench-web | 1 | 1 | 0 | 0 | 1 | 0 | 1 | - |" in text
    assert "| Write the unit | r | template | 1 | 1 | 1 | 0.70 |" in text


def test_merge_document_replaces_only_the_generated_section():
    section = bench.render_section(results_for_render())
    assert section.startswith(bench.MARK_BEGIN) and section.endswith(bench.MARK_END)
    assert "`make bench`" in section and "| 2 | 23.5 GiB | AMD EPYC |" in section
    document = f"# Title\n\nBefore.\n\n{bench.MARK_BEGIN}\nstale figures\n{bench.MARK_END}\n\nAfter.\n"
    merged = bench.merge_document(document, section)
    assert merged.startswith("# Title\n\nBefore.\n\n") and merged.endswith("\n\nAfter.\n")
    assert "stale figures" not in merged and section in merged
    assert bench.merge_document(None, section).startswith("# Benchmark\n")


def test_a_stopped_run_says_so_above_its_figures():
    results = results_for_render() | {"incomplete": "the deadline of 1500 s passed before step 'noop'"}
    assert "**Incomplete:** the deadline of 1500 s passed before step 'noop'" in bench.render_section(results)
    assert "Incomplete" not in bench.render_section(results_for_render())


def test_callback_records_each_result_for_the_bench(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent("""\
        - name: A few kinds of result
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Look
              ansible.builtin.command: "true"
              changed_when: false
            - name: Decide
              ansible.builtin.set_fact:
                answer: 42
            - name: Skip
              ansible.builtin.command: "false"
              when: false
            - name: Loop with one item skipped
              ansible.builtin.command: "true"
              changed_when: item == 2
              loop: [1, 2, 3]
              when: item != 3
        """))
    output = tmp_path / "records.json"
    env = {**os.environ, "ANSIBLE_CALLBACK_PLUGINS": str(REPO_ROOT / "plugins" / "callback"),
           "ANSIBLE_CALLBACKS_ENABLED": "monstack_bench", "MONSTACK_BENCH_OUTPUT": str(output),
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_LOCALHOST_WARNING": "false"}
    run = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook") if (REPO_ROOT / ".venv").exists()
                          else os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                          "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                          str(playbook)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    records = json.loads(output.read_text())["records"]
    by_task = {item["task"]: item for item in records}
    assert [by_task[name]["status"] for name in ("Look", "Decide", "Skip")] == ["ok", "ok", "skipped"]
    assert (by_task["Loop with one item skipped"]["items"], by_task["Loop with one item skipped"]["items_skipped"]) == (3, 1)
    assert by_task["Loop with one item skipped"]["status"] == "changed"
    summary = bench.aggregate(records)
    assert summary["hosts"]["localhost"]["module_runs"] == 3  # Look, and two loop items
    assert summary["hosts"]["localhost"]["on_controller"] == 1
    assert all(item["finished"] >= item["started"] >= 0 for item in records)


def test_results_of_a_run_stopped_before_its_fleet_keep_the_stack():
    run = bench.Bench(bench.parse_args(["--quick"]))
    try:
        run.breakdowns = {"noop_stack": {"hosts": {}}}
        assert list(run.results()["breakdown"]) == ["noop_stack"]
        run.breakdowns["noop_fleet_2"] = {"hosts": {}}
        run.breakdowns["noop_fleet_1"] = {"hosts": {}}
        assert list(run.results()["breakdown"]) == ["noop_stack", "noop_fleet_2"]
    finally:
        run.cleanup()
        shutil.rmtree(run.workdir)


def test_recap_changed_reads_each_hosts_changed_count_from_the_play_recap():
    output = ("TASK [x] ***\nok: [bench-web]\n\nPLAY RECAP *****\n"
              "bench-db                   : ok=28   changed=0    unreachable=0    failed=0    skipped=9    rescued=0\n"
              "bench-web                  : ok=26   changed=2    unreachable=0    failed=0    skipped=9    rescued=0\n")
    assert bench.recap_changed(output) == {"bench-db": 0, "bench-web": 2}


def test_recap_changed_refuses_output_without_a_recap():
    with pytest.raises(bench.BenchError):
        bench.recap_changed("ERROR! the playbook could not be found\n")


def test_a_run_without_the_preload_keeps_every_other_vars_plugin_of_ansible_cfg():
    config = (REPO_ROOT / "ansible.cfg").read_text()
    enabled = bench.vars_plugins_without("monstack_preload", config).split(",")
    assert "monstack_preload" not in enabled and "host_group_vars" in enabled and "monstack_defaults" in enabled
    with pytest.raises(ValueError, match="no_such_plugin"):
        bench.vars_plugins_without("no_such_plugin", config)


def test_each_speed_up_is_switched_off_by_environment_only():
    environments = bench.speed_up_environments((REPO_ROOT / "ansible.cfg").read_text())
    assert set(environments) == {"monstack_preload", "monstack_template"}
    assert (Path(environments["monstack_template"]["ANSIBLE_LOOKUP_PLUGINS"]) / "monstack_template.py").is_file()


def test_speed_up_savings_compare_the_rerun_without_each_against_the_ordinary_one():
    figures = {"noop_stack": {"median": 15.0}, "floor_stack": {"median": 4.0},
               "noop_without_monstack_preload_stack": {"median": 20.0}}
    assert bench.speed_up_savings(figures) == [{"speed_up": "monstack_preload", "without": 20.0, "with": 15.0,
                                                "saved": "25%"}]
    assert bench.figure_label("noop_without_monstack_preload_stack") == \
        "no-op rerun of site.yml, full stack, without monstack_preload"
