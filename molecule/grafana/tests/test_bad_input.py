"""Bad Grafana input fails before anything on the host changes, with a message naming the variable."""

from __future__ import annotations

import pytest
from bench_checks import assert_refused_before_any_change, hosts

testinfra_hosts = hosts("grafana")

BAD_INPUT = [
    pytest.param({"grafana_admin_password": ""}, "grafana_admin_password is not set", id="no-admin-password"),
    pytest.param({"grafana_database_type": "mysql"}, "grafana_database_type must be one of", id="unknown-database"),
]


@pytest.mark.parametrize(("extra_vars", "message"), BAD_INPUT)
def test_bad_input_fails_before_anything_changes(host, extra_vars, message):
    pid = host.check_output("systemctl show -p MainPID --value grafana-server")
    assert_refused_before_any_change(host, extra_vars, message, limit="g-graf")
    assert host.check_output("systemctl show -p MainPID --value grafana-server") == pid
