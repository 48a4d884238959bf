"""Record every task result of a run, with its timing, for tools/bench.py.

Thin on purpose: it writes what happened, one record per host and task, and tools/bench.py (pure,
unit-tested) aggregates. Enabled only by the bench, through the environment:
ANSIBLE_CALLBACK_PLUGINS=plugins/callback ANSIBLE_CALLBACKS_ENABLED=monstack_bench
MONSTACK_BENCH_OUTPUT=<file>.
"""

from __future__ import annotations

import json
import time

from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: monstack_bench
type: aggregate
short_description: write each task result and its timing to a JSON file for tools/bench.py
description:
  - One record per host and task (handlers included) with the action, the status, how many loop
    items ran and were skipped, whether it ran on the controller, and when it finished.
  - Aggregation is left to tools/bench.py.
requirements:
  - enabled through ANSIBLE_CALLBACKS_ENABLED
options:
  output:
    description: File the records are written to, as JSON, when the run ends.
    type: path
    env:
      - name: MONSTACK_BENCH_OUTPUT
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "monstack_bench"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = time.monotonic()
        self._task_started: dict[str, float] = {}
        self._records: list[dict] = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started[task._uuid] = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self._task_started[task._uuid] = time.monotonic()

    def _record(self, result, status):
        now = time.monotonic()
        task = result.task
        data = result.result
        items = data.get("results") if isinstance(data.get("results"), list) else None
        delegated = data.get("_ansible_delegated_vars") or {}
        self._records.append({
            "host": result.host.get_name(),
            "task": result.task_name,
            "role": task._role.get_name() if task._role else "",
            "action": task.action,
            "handler": isinstance(task, Handler),
            "status": status,
            "items": len(items) if items is not None else None,
            "items_skipped": sum(1 for item in items or [] if isinstance(item, dict) and item.get("skipped")),
            "delegated_connection": delegated.get("ansible_connection", ""),
            "started": round(self._task_started.get(task._uuid, now) - self._started, 4),
            "finished": round(now - self._started, 4),
        })

    def v2_runner_on_ok(self, result):
        self._record(result, "changed" if result.is_changed() else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        output = self.get_option("output")
        if not output:
            return
        with open(output, "w", encoding="utf-8") as handle:
            json.dump({"elapsed": round(time.monotonic() - self._started, 4), "records": self._records}, handle)
