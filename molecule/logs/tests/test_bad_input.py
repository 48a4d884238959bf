"""Bad log shipper input fails before anything on the host changes, with a message naming the variable."""

from __future__ import annotations

import json

import pytest
from bench_checks import ChangeWatch, hosts, run_playbook

testinfra_hosts = [spec for spec in hosts("all") if "l-app" in spec]

BAD_INPUT = [
    pytest.param({"log_shipper_app_logs": [{"labels": {"service": "chat-app"}}]},
                 "log_shipper_app_logs[0] has no path", id="log-source-without-path"),
    pytest.param({"log_shipper_kind": "fluentd"}, "log_shipper_kind must be one of", id="unknown-shipper"),
    pytest.param({"log_shipper_app_logs": [{"path": "/var/log/bench-app/*.json"}]},
                 "log_shipper_app_logs[0] (/var/log/bench-app/*.json) needs labels.service", id="no-service-label"),
]


@pytest.mark.parametrize(("extra_vars", "message"), BAD_INPUT)
def test_bad_input_fails_before_anything_changes(host, extra_vars, message):
    pid = host.check_output("systemctl show -p MainPID --value promtail")
    watch = ChangeWatch(host)
    watch.mark()
    run = run_playbook("site.yml", "-e", json.dumps(extra_vars), limit="l-app")
    assert run.rc != 0, f"the play accepted {extra_vars}:\n{run.tail()}"
    assert message in run.output, f"the failure does not say {message!r}:\n{run.tail()}"
    changed = [path for path in watch.changed_files() if path.startswith(("/etc/", "/usr/"))]
    assert changed == [], f"the failed play changed files on the host: {changed}"
    assert host.check_output("systemctl show -p MainPID --value promtail") == pid
