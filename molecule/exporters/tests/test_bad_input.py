"""Bad exporter input fails before anything on the host changes, with a message that names the fix."""

from __future__ import annotations

import pytest
from bench_checks import INVENTORY, assert_refused_before_any_change

testinfra_hosts = [f"ansible://x-web?ansible_inventory={INVENTORY}"]

BAD_INPUT = [
    pytest.param({"redis_exporter_redis_password": "", "redis_exporter_redis_password_file": "/etc/redis/absent.json"},
                 "does not exist on x-web", id="missing-password-file"),
    pytest.param({"redis_exporter_redis_addr": "redis://default:hunter2@localhost:6379"},
                 "without credentials", id="credentials-in-redis-address"),
    pytest.param({"nginx_exporter_stub_status_listen": "0.0.0.0:8073"}, "must be a loopback host:port",
                 id="stub-status-on-every-interface"),
    pytest.param({"mongodb_exporter_uri": "mongodb+srv://cluster.example/"}, "mongodb_exporter_uri must be",
                 id="uri-this-exporter-cannot-read"),
    pytest.param({"redis_exporter_web_config": {"basic_auth_users": {"prometheus": "x"}}},
                 "Debian 12's redis_exporter 1.45", id="basic-auth-the-exporter-lacks"),
]


@pytest.mark.parametrize(("extra_vars", "message"), BAD_INPUT)
def test_bad_input_fails_before_anything_changes(host, extra_vars, message):
    pids = {unit: host.check_output(f"systemctl show -p MainPID --value {unit}")
            for unit in ("redis_exporter", "nginx_exporter", "mongodb_exporter")}
    assert_refused_before_any_change(host, extra_vars, message, limit="x-web")
    assert {unit: host.check_output(f"systemctl show -p MainPID --value {unit}") for unit in pids} == pids
