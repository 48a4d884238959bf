"""Bad Grafana input fails before anything on the host changes, with a message naming the variable."""

from __future__ import annotations

import json

import pytest
from bench_checks import ChangeWatch, hosts, run_playbook

testinfra_hosts = hosts("grafana")

BAD_INPUT = [
    pytest.param({"grafana_admin_password": ""}, "grafana_admin_password is not set", id="no-admin-password"),
    pytest.param({"grafana_database_type": "mysql"}, "grafana_database_type must be one of", id="unknown-database"),
]


@pytest.mark.parametrize(("extra_vars", "message"), BAD_INPUT)
def test_bad_input_fails_before_anything_changes(host, extra_vars, message):
    pid = host.check_output("systemctl show -p MainPID --value grafana-server")
    watch = ChangeWatch(host)
    watch.mark()
    run = run_playbook("site.yml", "-e", json.dumps(extra_vars), limit="g-graf")
    assert run.rc != 0, f"the play accepted {extra_vars}:\n{run.tail()}"
    assert message in run.output, f"the failure does not say {message!r}:\n{run.tail()}"
    changed = [path for path in watch.changed_files() if path.startswith(("/etc/", "/usr/"))]
    assert changed == [], f"the failed play changed files on the host: {changed}"
    assert host.check_output("systemctl show -p MainPID --value grafana-server") == pid
