"""inventories/stack_defaults.yml reaches every inventory below its own group_vars (plugins/vars)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import yaml

from conftest import REPO_ROOT, load_module

plugin = load_module("plugins/vars/monstack_defaults.py", "monstack_defaults_vars")


def test_the_plugin_reads_the_repository_defaults_file():
    assert plugin.DEFAULTS == REPO_ROOT / "inventories" / "stack_defaults.yml"
    defaults = yaml.safe_load(plugin.DEFAULTS.read_text())
    # Nothing an operator sets is defined there, only read with its default: an inventory's
    # group_vars/all would otherwise have to fight it.
    assert not [name for name in defaults if name.startswith("monitoring_")], sorted(defaults)


def test_an_inventory_value_wins_over_the_stack_default(tmp_path):
    inventory = tmp_path / "env"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_connection: local\n")
    (inventory / "group_vars" / "all.yml").write_text("monitoring_tls_enabled: false\nnode_exporter_web_config: {x: 1}\n")
    query = [sys.executable, "-m", "ansible", "adhoc", "h1", "-i", str(inventory / "hosts.yml"), "-m", "ansible.builtin.debug",
             "-a", "msg={{ [prometheus_scrape_ca_file, node_exporter_web_config, alertmanager_web_config]"
                   " | to_json | b64encode }}"]
    out = subprocess.run(query, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    encoded = re.search(r"msg: (\S+)", out.stdout)
    assert encoded, out.stdout
    # TLS off from the inventory: no CA, plain web configs; the explicit web config is the inventory's.
    assert json.loads(base64.b64decode(encoded.group(1))) == ["", {"x": 1}, {}]


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
