"""node_exporter as an operator sees it on each host of the scenario."""

import re

import bcrypt
import pytest
import yaml

from bench_checks import hosts, http_body, http_status, journal, scrape_credentials, unit_exposure, wait_until

testinfra_hosts = hosts("all")

# ne-bookworm overrides the stack's default (TLS + the scraper's basic auth) with basic auth alone.
PLAIN_AUTH = {"ne-bookworm": ("scraper", "bench-only-password")}
MAX_EXPOSURE = 2.0


def settings(host):
    hostvars = host.ansible.get_variables()
    port = int(hostvars.get("node_exporter_port", 9100))
    name = hostvars["inventory_hostname"]
    user, password = PLAIN_AUTH.get(name) or scrape_credentials()
    return {
        "name": name,
        "port": port,
        "url": f"{'http' if name in PLAIN_AUTH else 'https'}://127.0.0.1:{port}/metrics",
        "user": user,
        "password": password,
        "method": hostvars.get("node_exporter_install_method", "package"),
    }


def main_pid(host) -> int:
    return int(host.check_output("systemctl show -p MainPID --value node_exporter"))


def test_node_exporter_is_enabled_and_running(host):
    service = host.service("node_exporter")
    assert service.is_enabled, journal(host, "node_exporter")
    assert service.is_running, journal(host, "node_exporter")


def test_node_exporter_runs_as_its_own_unprivileged_user(host):
    process = host.process.get(pid=main_pid(host))
    assert process.user == "node_exporter"
    account = host.user("node_exporter")
    assert account.uid != 0 and account.uid < 1000, "a system account, not root and not a login user"
    assert account.shell == "/usr/sbin/nologin"


def test_metrics_are_served_on_the_configured_address(host):
    conf = settings(host)
    listeners = host.check_output("ss -ltn")
    # Go's wildcard listener for 0.0.0.0 shows as "*".
    assert re.search(rf"\s(0\.0\.0\.0|\*):{conf['port']}\s", listeners), listeners
    body = http_body(host, conf["url"], conf["user"], conf["password"])
    assert "node_exporter_build_info" in body
    assert re.search(r'^node_cpu_seconds_total\{', body, re.M), "host metrics are missing"


def test_textfile_collector_exports_what_timers_write(host):
    conf = settings(host)
    probe = "/var/lib/node_exporter/textfile/bench_probe.prom"
    host.run_expect([0], f"printf 'bench_textfile_probe 42\\n' > {probe} && chmod 0644 {probe}")
    try:
        body = http_body(host, conf["url"], conf["user"], conf["password"])
        assert re.search(r"^bench_textfile_probe 42$", body, re.M), "textfile collector did not export the probe"
    finally:
        host.run(f"rm -f {probe}")


def test_systemd_restarts_node_exporter_after_kill_9(host):
    conf = settings(host)
    before = main_pid(host)
    host.run_expect([0], f"kill -9 {before}")
    after = wait_until(lambda: (pid := main_pid(host)) not in (0, before) and pid, timeout=30,
                       what="a new node_exporter process")
    assert after != before
    wait_until(lambda: http_status(host, conf["url"], conf["user"], conf["password"]) == 200,
               timeout=30, what="node_exporter answering again after kill -9")


def test_unit_exposure_is_at_most_2(host):
    exposure, report = unit_exposure(host, "node_exporter.service")
    assert exposure <= MAX_EXPOSURE, report


def test_packaged_unit_is_masked_and_stopped(host):
    if settings(host)["method"] != "package":
        pytest.skip("only the package method installs Debian's unit")
    packaged = host.service("prometheus-node-exporter")
    assert not packaged.is_running
    assert host.run("systemctl is-enabled prometheus-node-exporter").stdout.strip() == "masked"


def test_web_config_is_not_world_readable_and_holds_only_a_bcrypt_hash_of_the_password(host):
    web_config = host.file("/etc/node_exporter/web-config.yml")
    assert web_config.mode & 0o007 == 0
    assert web_config.group == "node_exporter"
    wanted = settings(host)
    assert wanted["password"] not in web_config.content_string
    users = yaml.safe_load(web_config.content_string)["basic_auth_users"]
    assert set(users) == {wanted["user"]}, users
    hashed = users[wanted["user"]]
    assert re.fullmatch(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}", hashed), "not a bcrypt hash"
    assert bcrypt.checkpw(wanted["password"].encode(), hashed.encode()), "the hash is not of the password"


def test_basic_auth_refuses_scrapes_without_credentials(host):
    conf = settings(host)
    assert http_status(host, conf["url"]) == 401
    assert http_status(host, conf["url"], conf["user"], "wrong-password") == 401
    assert http_status(host, conf["url"], conf["user"], conf["password"]) == 200


def test_archive_install_runs_the_verified_tarball_binary(host):
    if settings(host)["method"] != "archive":
        pytest.skip("only ne-archive installs from the tarball")
    exec_start = host.check_output("systemctl show -p ExecStart --value node_exporter")
    match = re.search(r"path=(/usr/local/lib/monstack/node_exporter-([0-9a-f]{16})/node_exporter)", exec_start)
    assert match, exec_start
    assert host.file(match.group(1)).user == "root"
    assert not host.package("prometheus-node-exporter").is_installed


def test_plain_http_is_refused_where_tls_is_on(host):
    conf = settings(host)
    if conf["url"].startswith("http:"):
        pytest.skip("ne-bookworm overrides the web config without TLS")
    plain = conf["url"].replace("https:", "http:")
    assert http_status(host, plain, conf["user"], conf["password"]) in (0, 400), "metrics served in clear text"
