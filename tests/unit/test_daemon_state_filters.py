"""plugins/filter/daemon_state.py: what roles/daemon's module runs are given, and which handlers their
results notify."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import REPO_ROOT, load_module

daemon_state = load_module("plugins/filter/daemon_state.py", "monstack_daemon_state")
daemon_web = load_module("plugins/filter/daemon_web.py", "monstack_daemon_web")
DEFAULTS = yaml.safe_load((REPO_ROOT / "roles/daemon/vars/main.yml").read_text())["_daemon_defaults"]


def _settings(install, **spec):
    """Settings as the role has them: the spec completed by daemon_settings."""
    base = {"name": "x_exporter", "description": "X", "user": "x", "group": "x",
            "ready": {"url": "https://127.0.0.1:1/metrics"}, "install": install}
    return daemon_web.daemon_settings(dict(base, **spec), DEFAULTS, "monstack-tls")


ARCHIVE = {"method": "archive", "archive_sha256": "a" * 64, "archive_binary": "x_exporter", "archive_file": "x.tgz"}
DEBIAN = {"method": "package", "package": "prometheus-x-exporter", "package_binary": "/usr/bin/x",
          "package_units": ["prometheus-x-exporter"], "extra_packages": ["libx"]}
REPOSITORY = {"method": "package", "package": "loki", "package_binary": "/usr/bin/loki",
              "apt_repository": {"url": "https://apt.grafana.com", "key": "https://apt.grafana.com/gpg.key"}}
DEB = {"method": "deb", "package": "loki", "package_binary": "/usr/bin/loki", "archive_file": "loki.deb",
       "archive_sha256": "b" * 64, "diverted_units": ["/etc/systemd/system/loki.service"]}


@pytest.mark.parametrize(("install", "vendor"), [(ARCHIVE, False), (DEBIAN, False), (REPOSITORY, True), (DEB, True)])
def test_only_a_vendor_repository_or_a_deb_is_a_vendor_package(install, vendor):
    assert daemon_state.daemon_vendor_package(_settings(install)) is vendor


def test_the_account_step_makes_the_user_and_the_directories_in_the_daemons_group():
    account = daemon_state.daemon_account(_settings(ARCHIVE, groups=["adm"], directories=[
        {"path": "/etc/x", "mode": "0750"}, {"path": "/var/lib/x", "owner": "x", "group": "adm"}]), "/usr/local/lib/x")
    assert account["groups"] == ["x"]
    assert account["users"] == [{"name": "x", "group": "x", "groups": ["adm"], "shell": "/usr/sbin/nologin",
                                 "home": "/nonexistent"}]
    assert account["paths"] == [
        {"group": "x", "path": "/etc/x", "mode": "0750"},
        {"group": "adm", "path": "/var/lib/x", "owner": "x"},
        # A tarball's own directory, root's: the daemon cannot change what it runs.
        {"path": "/usr/local/lib/x", "owner": "root", "group": "root", "mode": "0755"}]
    assert account["packages"] == [] and account["units"] == []


def test_a_debian_package_is_installed_with_its_own_units_masked_and_stopped():
    account = daemon_state.daemon_account(_settings(DEBIAN), "/unused")
    assert account["paths"] == [{"path": "/etc/systemd/system/prometheus-x-exporter.service", "state": "link",
                                 "src": "/dev/null"}]
    assert account["packages"] == ["prometheus-x-exporter", "libx"]
    assert account["units"] == [{"name": "prometheus-x-exporter.service", "state": "stopped"}]


@pytest.mark.parametrize("install", [REPOSITORY, DEB])
def test_a_vendor_package_is_left_to_the_vendor_steps(install):
    """Installed before the account step (tasks/vendor.yml), never by the account step's module run;
    its unit is diverted there, not masked (a mask would mask ours, of the same name)."""
    account = daemon_state.daemon_account(_settings(dict(install, extra_packages=["libx"])), "/unused")
    assert account["packages"] == ["libx"] and account["paths"] == [] and account["units"] == []


def test_the_service_files_are_the_callers_then_the_web_configuration_then_the_unit():
    settings = _settings(ARCHIVE, web_config={"basic_auth_users": {"prometheus": "secret"}})
    files = daemon_state.daemon_files(
        settings, [{"dest": "/etc/x/x.yml", "content": "a: 1\n", "validate": "x check %s"},
                   {"dest": "/etc/x/secret", "content": "s", "secret": True, "mode": "0600", "on_change": "reload"}],
        "/etc/systemd/system/x_exporter.service", "[Unit]\n", "web\n")
    assert files == [
        {"owner": "root", "group": "x", "mode": "0640", "secret": False, "on_change": "restart",
         "dest": "/etc/x/x.yml", "content": "a: 1\n", "validate": "x check %s"},
        {"owner": "root", "group": "x", "mode": "0600", "secret": True, "on_change": "reload",
         "dest": "/etc/x/secret", "content": "s"},
        # The exporter toolkit reads it again on every connection: its change asks nothing.
        {"dest": "/etc/x_exporter/web-config.yml", "owner": "root", "group": "x", "mode": "0640", "secret": True,
         "on_change": "none", "content": "web\n"},
        {"dest": "/etc/systemd/system/x_exporter.service", "owner": "root", "group": "root", "mode": "0644",
         "on_change": "restart", "content": "[Unit]\n"}]


def test_a_daemon_without_a_web_configuration_gets_none_written():
    files = daemon_state.daemon_files(_settings(ARCHIVE), [], "/etc/systemd/system/x_exporter.service", "[Unit]\n")
    assert [entry["dest"] for entry in files] == ["/etc/systemd/system/x_exporter.service"]


def test_files_that_are_not_entries_are_refused():
    with pytest.raises(AnsibleFilterError, match="daemon_files must be a list of file entries"):
        daemon_state.daemon_files(_settings(ARCHIVE), ["/etc/x/x.yml"], "/u", "")


def test_the_service_unit_is_enabled_and_started():
    assert daemon_state.daemon_service_units(_settings(ARCHIVE)) == [
        {"name": "x_exporter.service", "enabled": True, "state": "started"}]


@pytest.mark.parametrize(("results", "handlers"), [
    # A converged daemon: the account run changed nothing, the service run was skipped.
    ([{"changed": False, "on_change": [], "changed_packages": []}, {"skipped": True, "changed": False}], []),
    ([{"on_change": ["restart", "none"]}, {"skipped": True}], ["Restart x"]),
    ([{"on_change": []}, {"on_change": ["reload"]}], ["Reload x"]),
    ([{"on_change": ["reload", "restart"]}], ["Restart x", "Reload x"]),
    # A new package restarts the daemon, whatever its files did.
    ([{"on_change": [], "changed_packages": ["prometheus-x-exporter"]}], ["Restart x"]),
    # A file another service reads names that service's handler of the caller.
    ([{"on_change": ["Reload nginx", "none"]}, {"on_change": ["Reload nginx"]}], ["Reload nginx"]),
    # A failed run's result, or none at all (start without prepare).
    ([{"failed": True, "msg": "refused"}], []),
    ([{}, {"on_change": ["restart"]}], ["Restart x"]),
])
def test_handlers_are_what_the_module_runs_changed(results, handlers):
    assert daemon_state.daemon_handlers(results, "x") == handlers


def test_the_filters_want_the_completed_settings():
    with pytest.raises(AnsibleFilterError, match="completed daemon settings"):
        daemon_state.daemon_account({"name": "x"}, "/d")
