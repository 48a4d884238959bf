"""The repository's group_vars/all (the stack-wide defaults) reaches every inventory as inventory data,
below the inventory's own group_vars (plugins/vars/monstack_defaults.py, ansible.cfg)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, STACK_SETTINGS, load_module

plugin = load_module("plugins/vars/monstack_defaults.py", "monstack_defaults_vars")


def test_the_plugin_reads_the_repository_group_vars_all():
    assert plugin.GROUP_VARS == REPO_ROOT / "group_vars"
    files = sorted((REPO_ROOT / "group_vars" / "all").glob("*.yml"))
    assert [path.name for path in files] == ["data.yml", "ports.yml", "probes.yml", "scrape.yml", "stack.yml"]
    defaults = yaml.safe_load(files[-1].read_text())
    # Nothing an operator sets is defined there, only read with its default: an inventory's
    # group_vars/all would otherwise have to fight it.
    assert not [name for name in defaults if name.startswith("monitoring_")], sorted(defaults)
    # Only group all: a file for another group would be read by nothing.
    assert plugin.stray_entries() == []


def test_a_group_file_beside_all_is_refused_not_ignored(tmp_path):
    (tmp_path / "all").mkdir()
    (tmp_path / "prometheus.yml").write_text("x: 1\n")
    (tmp_path / "README.md").write_text("notes\n")
    assert plugin.stray_entries(tmp_path) == ["prometheus.yml"]


def _inventory(tmp_path, files: dict) -> str:
    """A two-host inventory (h1 in group web, h2) with the given extra files; its hosts.yml path."""
    inventory = tmp_path / "env"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    h2:\n      ansible_connection: local\n"
        "  children:\n    web:\n      hosts:\n        h1:\n          ansible_connection: local\n")
    for name, text in files.items():
        (inventory / name).parent.mkdir(parents=True, exist_ok=True)
        (inventory / name).write_text(text)
    return str(inventory / "hosts.yml")


def _value(inventory: str, expression: str, cwd=REPO_ROOT, *extra: str):
    """`expression` templated for h1 by an ad hoc run from `cwd` (its play-stage directory)."""
    command = [sys.executable, "-m", "ansible", "adhoc", "h1", "-i", inventory, *extra, "-m", "ansible.builtin.debug",
               "-a", "msg={{ " + expression + " | to_json | b64encode }}"]
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    encoded = re.search(r"msg: (\S+)", out.stdout)
    assert encoded, out.stdout
    return json.loads(base64.b64decode(encoded.group(1)))


# From the repository root (where site.yml sits, and where group_vars/ would be playbook group_vars) and
# from playbooks/ (the concern playbooks and plan.yml): the same precedence from both.
PLAY_DIRS = [REPO_ROOT, REPO_ROOT / "playbooks"]


@pytest.mark.parametrize("cwd", PLAY_DIRS, ids=["repo-root", "playbooks"])
def test_an_inventory_value_wins_over_the_stack_default(tmp_path, cwd):
    inventory = _inventory(tmp_path, {"group_vars/all.yml": "monitoring_tls_enabled: false\n"
                                                            "node_exporter_web_config: {x: 1}\n"})
    # TLS off from the inventory: no CA, plain web configs; the explicit web config is the inventory's.
    assert _value(inventory, "[prometheus_scrape_ca_file, node_exporter_web_config, alertmanager_web_config]",
                  cwd) == ["", {"x": 1}, {}]


@pytest.mark.parametrize("cwd", PLAY_DIRS, ids=["repo-root", "playbooks"])
def test_a_group_or_host_value_wins_over_the_stack_default(tmp_path, cwd):
    inventory = _inventory(tmp_path, {"group_vars/web.yml": "node_exporter_web_config: {group: web}\n",
                                      "host_vars/h1.yml": "alertmanager_web_config: {host: h1}\n"})
    assert _value(inventory, "[node_exporter_web_config, alertmanager_web_config, hostvars.h2.alertmanager_web_config"
                             " | length > 0, hostvars.h2.node_exporter_web_config.basic_auth_users | list]",
                  cwd) == [{"group": "web"}, {"host": "h1"}, True, ["prometheus"]]


@pytest.mark.parametrize("cwd", PLAY_DIRS, ids=["repo-root", "playbooks"])
def test_the_stack_default_is_in_the_hostvars_of_other_hosts(tmp_path, cwd):
    """What Prometheus needs: another host's exporter settings, from the stack's defaults, through hostvars."""
    inventory = _inventory(tmp_path, {})
    assert _value(inventory, "[hostvars.h2.node_exporter_web_config.tls_server_config,"
                             " hostvars.h2.prometheus_scrape_username, hostvars.h2.pki_cert_dir,"
                             " hostvars.h2.node_exporter_port, hostvars.h2.loki_port]", cwd) \
        == [{"cert_file": "/etc/monstack/tls/host.crt", "key_file": "/etc/monstack/tls/host.key"},
            "prometheus", "/etc/monstack/tls", 9100, 3100]


def test_a_port_is_defined_once_in_the_stack_ports_and_in_no_role():
    """Every port another host connects to (what Prometheus scrapes, the firewall opens, Grafana and the
    shippers reach) is in group_vars/all/ports.yml and not in any role's defaults."""
    ports = yaml.safe_load((REPO_ROOT / "group_vars" / "all" / "ports.yml").read_text())
    services = yaml.safe_load((REPO_ROOT / "roles" / "firewall" / "vars" / "main.yml").read_text())["_firewall_services"]
    kinds = yaml.safe_load((REPO_ROOT / "roles" / "prometheus" / "vars" / "main.yml").read_text())["_prometheus_scrape_kinds"]
    wanted = {spec["port_var"] for spec in services.values()} | {f"{spec['role']}_port" for spec in kinds.values()}
    assert sorted(wanted - set(ports)) == [], "add them to group_vars/all/ports.yml"
    in_roles = sorted(f"{path.relative_to(REPO_ROOT)}: {name}"
                      for path in (REPO_ROOT / "roles").glob("*/defaults/**/*.yml")
                      for name in (yaml.safe_load(path.read_text()) or {}) if name in STACK_SETTINGS)
    assert in_roles == [], "a port, data directory, probe module list or the scrape interval is defined once, " \
        "in group_vars/all"


def test_what_the_backup_and_the_probes_read_of_a_neighbour_is_stack_data():
    """roles/backup reads each component's data directory (and Grafana's database type), Prometheus the
    blackbox exporter's modules, from hostvars: each is defined in group_vars/all, so a host's value is
    one the daemon's role and its reader share, and no filter reads a role's files."""
    catalogue = yaml.safe_load((REPO_ROOT / "roles" / "backup" / "vars" / "main.yml").read_text())["_backup_catalogue"]
    read = {spec["data_var"] for spec in catalogue.values()} \
        | {spec["only_when"]["var"] for spec in catalogue.values() if "only_when" in spec} \
        | {"blackbox_exporter_modules"}
    assert sorted(read - set(STACK_SETTINGS)) == [], "define them in group_vars/all (data.yml, probes.yml)"
    filters = "".join(path.read_text() for path in (REPO_ROOT / "plugins").rglob("*.py"))
    assert '"defaults"' not in filters and "role_defaults" not in filters


def test_the_stack_defaults_are_inventory_data_not_playbook_group_vars():
    """ansible-inventory (no play at all) sees them: they come in once, at the inventory stage."""
    out = subprocess.run([sys.executable, "-m", "ansible", "inventory", "-i", str(REPO_ROOT / "inventories" / "lab"),
                          "--host", "lab-monitor"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                         check=False, env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    host = json.loads(out.stdout)
    assert host["pki_cert_dir"] == "{{ _monitoring_tls_dir }}"
    config = subprocess.run([sys.executable, "-m", "ansible", "config", "dump", "-t", "vars", "--only-changed"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                            env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"})
    # The builtin plugin would read group_vars/ beside site.yml a second time, as playbook group_vars.
    assert re.search(r"host_group_vars:\s*_+\s*stage\([^)]*\) = inventory", config.stdout), config.stdout


def test_loki_requires_client_certificates_and_every_client_presents_the_hosts(tmp_path):
    """Mutual TLS for Loki: its web config asks for a certificate of the stack's CA, and each of its
    clients (the shipper, Prometheus, Grafana, the blackbox probe) is given the host's; TLS off, none."""
    inventory = tmp_path / "env"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_connection: local\n")
    names = ["loki_web_config", "log_shipper_loki_client_cert_file", "log_shipper_loki_client_key_file",
             "prometheus_scrape_client_cert_file", "prometheus_scrape_client_key_file",
             "grafana_datasource_client_cert_file", "grafana_datasource_client_key_file",
             "blackbox_exporter_client_cert_file", "blackbox_exporter_client_key_file"]

    def query(*extra: str) -> list:
        command = [sys.executable, "-m", "ansible", "adhoc", "h1", "-i", str(inventory / "hosts.yml"), *extra,
                   "-m", "ansible.builtin.debug", "-a", "msg={{ [" + ", ".join(names) + "] | to_json | b64encode }}"]
        out = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                             env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(base64.b64decode(re.search(r"msg: (\S+)", out.stdout).group(1)))

    loki, *clients = query()
    assert loki == {"tls_server_config": {"cert_file": "/etc/monstack/tls/host.crt",
                                          "key_file": "/etc/monstack/tls/host.key",
                                          "client_ca_file": "/etc/monstack/tls/ca.crt",
                                          "client_auth_type": "RequireAndVerifyClientCert"}}
    assert clients == ["/etc/monstack/tls/host.crt", "/etc/monstack/tls/host.key"] * 4
    assert query("-e", "monitoring_tls_enabled=false") == [{}] + [""] * 8
