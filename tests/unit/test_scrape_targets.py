"""What the inventory wires: the scrape jobs Prometheus gets (plugins/filter/scrape_targets.py), the
Alertmanager cluster's peers (cluster.py), the firewall's openings (firewall.py), the components a host
backs up (backup.py) and the inventory lookups they share (plugins/plugin_utils/monstack/inventory.py)."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from conftest import REPO_ROOT, STACK_SETTINGS, inventory_hostvars, load_module

from monstack import inventory

scrape = load_module("plugins/filter/scrape_targets.py", "monstack_scrape_targets")
cluster = load_module("plugins/filter/cluster.py", "monstack_cluster")
firewall = load_module("plugins/filter/firewall.py", "monstack_firewall")
backup = load_module("plugins/filter/backup.py", "monstack_backup")

KINDS = {
    "node": {"group": "all", "role": "node_exporter"},
    "prometheus": {"group": "prometheus", "role": "prometheus"},
}
GROUPS = {"all": ["web1", "db1", "mon1"], "prometheus": ["mon1"], "ungrouped": []}


def jobs(hostvars, kinds=KINDS, groups=GROUPS, disabled=None):
    return {job["job_name"]: job for job in
            scrape.prometheus_scrape_jobs(kinds, groups, inventory_hostvars(hostvars), "prometheus", disabled)}


def test_ports_come_from_the_stack_ports_when_the_host_sets_none():
    result = jobs({"web1": {}, "db1": {}, "mon1": {}})
    assert [t["address"] for t in result["node"]["targets"]] == ["web1:9100", "db1:9100", "mon1:9100"]
    assert result["prometheus"]["targets"] == [{"address": "mon1:9090", "instance": "mon1"}]
    assert result["node"]["scheme"] == "http" and result["node"]["username"] == ""
    assert scrape.scrape_job_password(result["node"], {}) == ""


def test_a_host_without_the_port_is_refused_naming_the_variable_and_where_it_is_defined():
    # Not from a role's defaults file: a port is inventory data (group_vars/all/ports.yml).
    with pytest.raises(AnsibleFilterError, match=r"web1: node_exporter_port is not set.*group_vars/all/ports.yml"):
        scrape.prometheus_scrape_jobs(KINDS, {"all": ["web1"]}, {"web1": {}}, "prometheus")


@pytest.mark.parametrize("port", ["91OO", 70000, "9100 "])
def test_a_port_that_is_no_port_is_refused_naming_the_host_and_variable(port):
    with pytest.raises(AnsibleFilterError, match=r"web1: node_exporter_port: port .* is not a number from 1 to 65535"):
        jobs({"web1": {"node_exporter_port": port}, "db1": {}, "mon1": {}})


def test_a_host_override_of_the_port_and_address_is_what_prometheus_scrapes():
    result = jobs({"web1": {"node_exporter_port": 9110, "ansible_host": "10.0.0.5"},
                   "db1": {"monitoring_address": "db1.internal", "ansible_host": "192.0.2.9"},
                   "mon1": {"ansible_host": "2001:db8::1"}})
    assert [(t["address"], t["instance"]) for t in result["node"]["targets"]] == [
        ("10.0.0.5:9110", "web1"), ("db1.internal:9100", "db1"), ("[2001:db8::1]:9100", "mon1")]


def test_tls_and_basic_auth_of_the_exporters_make_an_authenticated_https_job():
    web = {"tls_server_config": {"cert_file": "/c", "key_file": "/k"}, "basic_auth_users": {"prometheus": "s3"}}
    result = jobs({host: {"node_exporter_web_config": web} for host in GROUPS["all"]})
    node = result["node"]
    assert (node["scheme"], node["username"]) == ("https", "prometheus")
    # The play keeps the jobs as facts, which -v prints: the password is read only where it is written.
    assert "s3" not in repr(node)
    hostvars = {host: {"node_exporter_web_config": web} for host in GROUPS["all"]}
    assert scrape.scrape_job_password(node, hostvars) == "s3"


def test_exporters_of_one_group_with_different_passwords_are_refused_with_the_fix():
    hostvars = {host: {"node_exporter_web_config": {"basic_auth_users": {"prometheus": host}}}
                for host in GROUPS["all"]}
    with pytest.raises(AnsibleFilterError, match="node_exporter_web_config differs.*group_vars"):
        jobs(hostvars)


def test_an_exporter_without_the_scrape_user_is_refused():
    hostvars = {host: {"node_exporter_web_config": {"basic_auth_users": {"admin": "x"}}} for host in GROUPS["all"]}
    with pytest.raises(AnsibleFilterError, match="no user 'prometheus'"):
        jobs(hostvars)


def test_empty_groups_and_disabled_kinds_make_no_job():
    result = jobs({"web1": {}, "db1": {}, "mon1": {}}, groups={"all": ["web1", "db1", "mon1"]}, disabled=["node"])
    assert result == {}


def test_scrape_configs_label_each_target_with_its_host_and_read_passwords_from_files():
    web = {"tls_server_config": {"cert_file": "/c", "key_file": "/k"}, "basic_auth_users": {"prometheus": "s3"}}
    result = jobs({host: {"node_exporter_web_config": web} for host in GROUPS["all"]})
    node = scrape.prometheus_scrape_configs([result["node"]], "/etc/ssl/monstack-ca.pem")[0]
    assert node["static_configs"][0] == {"targets": ["web1:9100"], "labels": {"instance": "web1"}}
    assert node["basic_auth"] == {"username": "prometheus", "password_file": "/etc/prometheus/secrets/node.password"}
    assert node["tls_config"] == {"ca_file": "/etc/ssl/monstack-ca.pem"}
    assert "s3" not in repr(node), "the password itself must stay out of prometheus.yml"


def test_the_service_exporter_groups_are_scraped_on_their_roles_ports():
    kinds = {kind: {"group": kind, "role": f"{kind}_exporter"} for kind in ("nginx", "redis", "mongodb", "postgres")}
    groups = {"nginx": ["web1"], "redis": ["web1"], "mongodb": ["db1"], "postgres": ["db1"]}
    result = jobs({"web1": {}, "db1": {"redis_exporter_port": 9200}}, kinds=kinds, groups=groups)
    assert {name: [t["address"] for t in job["targets"]] for name, job in result.items()} == {
        "nginx": ["web1:9113"], "redis": ["web1:9121"], "mongodb": ["db1:9216"], "postgres": ["db1:9187"]}


def test_a_kind_with_its_own_scrape_timeout_keeps_it_and_the_others_use_the_global_one():
    kinds = {"mongodb": {"group": "mongodb", "role": "mongodb_exporter", "scrape_timeout": "15s"},
             "node": {"group": "all", "role": "node_exporter"}}
    result = jobs({"db1": {}}, kinds=kinds, groups={"mongodb": ["db1"], "all": ["db1"]})
    configs = {c["job_name"]: c for c in scrape.prometheus_scrape_configs([result["mongodb"], result["node"]])}
    assert configs["mongodb"]["scrape_timeout"] == "15s"
    assert "scrape_timeout" not in configs["node"]


def test_alertmanager_configs_list_every_alertmanager_of_the_group():
    kinds = {"am": {"group": "alertmanager", "role": "prometheus"}}
    result = scrape.prometheus_scrape_jobs(kinds, {"alertmanager": ["am1", "am2"]}, inventory_hostvars({"am1": {}, "am2": {}}), "prometheus")
    assert scrape.prometheus_alertmanager_configs(result) == [
        {"scheme": "http", "static_configs": [{"targets": ["am1:9090", "am2:9090"]}]}]


LOKI_MTLS = {"tls_server_config": {"cert_file": "/t/host.crt", "key_file": "/t/host.key", "client_ca_file": "/t/ca.crt",
                                   "client_auth_type": "RequireAndVerifyClientCert"}}


@pytest.mark.parametrize(("client_auth_type", "required"), [
    ("RequireAndVerifyClientCert", True), ("RequireAnyClientCert", True), ("VerifyClientCertIfGiven", False),
    ("NoClientCert", False), (None, False)])
def test_only_the_require_client_auth_types_require_a_client_certificate(client_auth_type, required):
    tls = {"cert_file": "/c", "key_file": "/k", **({"client_auth_type": client_auth_type} if client_auth_type else {})}
    assert inventory.web_config_requires_client_cert({"tls_server_config": tls}) is required
    assert inventory.web_config_requires_client_cert({}) is False and inventory.web_config_requires_client_cert(None) is False


def test_a_job_whose_hosts_require_client_certificates_presents_the_scrape_certificate_and_no_other():
    kinds = {"loki": {"group": "loki", "role": "loki"}, "node": {"group": "all", "role": "node_exporter"}}
    tls = {"tls_server_config": {"cert_file": "/t/host.crt", "key_file": "/t/host.key"}}
    hostvars = {"l1": {"loki_web_config": LOKI_MTLS, "node_exporter_web_config": tls}}
    result = scrape.prometheus_scrape_jobs(kinds, {"loki": ["l1"], "all": ["l1"]}, inventory_hostvars(hostvars), "prometheus")
    assert {job["job_name"]: job["client_cert"] for job in result} == {"loki": True, "node": False}
    configs = {c["job_name"]: c for c in scrape.prometheus_scrape_configs(
        result, "/t/ca.crt", client_cert_file="/t/host.crt", client_key_file="/t/host.key")}
    assert configs["loki"]["scheme"] == "https"
    assert configs["loki"]["tls_config"] == {"ca_file": "/t/ca.crt", "cert_file": "/t/host.crt", "key_file": "/t/host.key"}
    assert configs["node"]["tls_config"] == {"ca_file": "/t/ca.crt"}, "a target that asks for no certificate gets none"


def test_a_job_requiring_client_certificates_without_one_to_present_is_refused_naming_the_variables():
    result = scrape.prometheus_scrape_jobs({"loki": {"group": "loki", "role": "loki"}}, {"loki": ["l1"]},
                                           inventory_hostvars({"l1": {"loki_web_config": LOKI_MTLS}}), "prometheus")
    with pytest.raises(AnsibleFilterError, match="job 'loki' require a client certificate.*"
                                                 "prometheus_scrape_client_cert_file and prometheus_scrape_client_key_file"):
        scrape.prometheus_scrape_configs(result, "/t/ca.crt")


def test_hosts_of_one_group_that_differ_in_requiring_client_certificates_are_refused():
    hostvars = {"l1": {"loki_web_config": LOKI_MTLS},
                "l2": {"loki_web_config": {"tls_server_config": LOKI_MTLS["tls_server_config"] | {
                    "client_auth_type": "NoClientCert"}}}}
    with pytest.raises(AnsibleFilterError, match="l2: loki_web_config differs.*client certificates"):
        scrape.prometheus_scrape_jobs({"loki": {"group": "loki", "role": "loki"}}, {"loki": ["l1", "l2"]}, inventory_hostvars(hostvars), "prometheus")


def test_application_jobs_read_their_file_sd_file_and_keep_their_settings():
    configs = scrape.prometheus_file_sd_configs({"shop": [], "api": []}, {"api": {"metrics_path": "/stats"}})
    assert configs == [
        {"job_name": "api", "metrics_path": "/stats", "file_sd_configs": [{"files": ["/etc/prometheus/file_sd/api.yml"]}]},
        {"job_name": "shop", "file_sd_configs": [{"files": ["/etc/prometheus/file_sd/shop.yml"]}]},
    ]


def test_a_lone_alertmanager_does_not_open_a_gossip_port():
    assert cluster.cluster_flags({"am1": {}}, ["am1"], "am1", 9094) == ["--cluster.listen-address="]


def test_every_alertmanager_peers_with_all_the_others():
    hostvars = {"am1": {"ansible_host": "10.0.0.1"}, "am2": {"ansible_host": "10.0.0.2"}, "am3": {}}
    assert cluster.cluster_flags(hostvars, ["am1", "am2", "am3"], "am1", 9094) == [
        "--cluster.listen-address=0.0.0.0:9094", "--cluster.advertise-address=10.0.0.1:9094",
        "--cluster.peer=10.0.0.2:9094", "--cluster.peer=am3:9094"]
    # A host known by name only advertises nothing and lets Alertmanager pick its private address.
    assert "--cluster.advertise-address" not in " ".join(cluster.cluster_flags(hostvars, ["am1", "am3"], "am3", 9094))


def test_a_cluster_advertise_address_that_is_no_ip_is_refused():
    with pytest.raises(AnsibleFilterError, match="not an IP address"):
        cluster.cluster_flags({"a": {}, "b": {}}, ["a", "b"], "a", 9094, advertise_ip="am.example.net")


PROBE_GROUPS = {"all": ["web1", "mon1"], "blackbox": ["mon1"]}


def probes(explicit, inventory=(), groups=PROBE_GROUPS, hostvars=None):
    hostvars = hostvars or {host: {} for host in groups["all"]}
    return {c["job_name"]: c for c in scrape.prometheus_probe_configs(
        list(explicit), list(inventory), groups, inventory_hostvars(hostvars), "prometheus")}


def test_probes_go_through_the_blackbox_exporter_with_the_target_as_instance():
    result = probes([{"module": "http_2xx", "targets": ["https://shop.test/health"], "labels": {"team": "web"}}])
    job = result["blackbox_http_2xx"]
    assert job["metrics_path"] == "/probe" and job["params"] == {"module": ["http_2xx"]}
    assert job["static_configs"] == [{"targets": ["https://shop.test/health"], "labels": {"team": "web"}}]
    assert {"target_label": "__address__", "replacement": "mon1:9115"} in job["relabel_configs"]
    assert {"source_labels": ["__param_target"], "target_label": "instance"} in job["relabel_configs"]


def test_inventory_probes_probe_every_host_of_the_group():
    result = probes([], [{"module": "icmp", "group": "all", "target": "{address}"},
                         {"module": "tcp_connect", "group": "all", "target": "{address}:22"}],
                    hostvars={"web1": {"ansible_host": "10.0.0.1"}, "mon1": {}})
    assert result["blackbox_icmp"]["static_configs"][0]["targets"] == ["10.0.0.1", "mon1"]
    assert result["blackbox_tcp_connect"]["static_configs"][0]["targets"] == ["10.0.0.1:22", "mon1:22"]


@pytest.mark.parametrize(("probe", "complaint"), [
    ({"module": "http_3xx", "targets": ["https://shop.test/"]}, "not a module of the blackbox exporter"),
    ({"module": "http_2xx", "targets": ["shop.test"]}, "must be a URL"),
    ({"module": "tcp_connect", "targets": ["db1"]}, "must be host:port"),
    ({"module": "icmp", "targets": ["db1:22"]}, "without port"),
], ids=["unknown-module", "http-without-scheme", "tcp-without-port", "icmp-with-port"])
def test_bad_probes_are_refused_with_what_to_fix(probe, complaint):
    with pytest.raises(AnsibleFilterError, match=complaint):
        probes([probe])


def test_the_probe_jobs_present_the_client_certificate_only_to_a_blackbox_exporter_requiring_one():
    """The certificate the tls_stack module presents to Loki is blackbox_exporter_client_cert_file's, in
    blackbox.yml; Prometheus presents its own only when the exporter itself requires one."""
    asked = {"module": "icmp", "targets": ["web1"]}
    plain = scrape.prometheus_probe_configs([asked], [], PROBE_GROUPS, inventory_hostvars({"web1": {}, "mon1": {}}), "prometheus",
                                            client_cert_file="/t/host.crt", client_key_file="/t/host.key")
    assert "tls_config" not in plain[0]
    hostvars = {"web1": {}, "mon1": {"blackbox_exporter_web_config": LOKI_MTLS}}
    strict = scrape.prometheus_probe_configs([asked], [], PROBE_GROUPS, inventory_hostvars(hostvars), "prometheus", "/t/ca.crt",
                                             client_cert_file="/t/host.crt", client_key_file="/t/host.key")
    assert strict[0]["tls_config"] == {"ca_file": "/t/ca.crt", "cert_file": "/t/host.crt", "key_file": "/t/host.key"}


def test_the_tls_stack_probe_presents_the_client_certificate_in_the_exporters_own_keys():
    """Loki refuses a handshake without a client certificate, so the probe of every https endpoint
    presents the host's; the keys are those of blackbox's <tls_config> (CONFIGURATION.md upstream)."""
    modules = STACK_SETTINGS["blackbox_exporter_modules"]
    assert modules["tls_stack"]["tcp"]["tls_config"] == {"ca_file": "{{ blackbox_exporter_ca_file }}",
                                                         "cert_file": "{{ blackbox_exporter_client_cert_file }}",
                                                         "key_file": "{{ blackbox_exporter_client_key_file }}"}


def test_without_a_blackbox_host_inventory_probes_are_skipped_and_explicit_ones_refused():
    groups = {"all": ["web1"]}
    assert probes([], [{"module": "icmp", "group": "all"}], groups=groups) == {}
    with pytest.raises(AnsibleFilterError, match="no host is in group blackbox"):
        probes([{"module": "icmp", "targets": ["web1"]}], groups=groups)


FIREWALL_SERVICES = {
    "node_exporter": {"group": "all", "role": "node_exporter", "port_var": "node_exporter_port", "from": ["prometheus"]},
    "alertmanager_cluster": {"group": "alertmanager", "role": "alertmanager", "port_var": "alertmanager_cluster_port",
                             "from": ["alertmanager"], "protos": ["tcp", "udp"]},
    "prometheus": {"group": "prometheus", "role": "prometheus", "port_var": "prometheus_port",
                   "from": ["prometheus", "admin"]},
}
FIREWALL_GROUPS = {"all": ["am1", "am2", "mon1"], "prometheus": ["mon1"], "alertmanager": ["am1", "am2"]}
FIREWALL_HOSTVARS = {"am1": {"ansible_host": "10.0.0.1"},
                     "am2": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}}},
                     "mon1": {"monitoring_address": "2001:db8::9", "ansible_host": "mon1.example"}}


def openings(host, admin=(), extra=(), hostvars=FIREWALL_HOSTVARS):
    return firewall.firewall_openings(host, FIREWALL_SERVICES, FIREWALL_GROUPS, inventory_hostvars(hostvars), list(admin), list(extra))


def test_exporter_ports_open_to_the_prometheus_hosts_only():
    found = {(o["comment"], o["proto"]): o for o in openings("am1")}
    assert found[("node_exporter", "tcp")]["port"] == 9100
    assert found[("node_exporter", "tcp")]["ipv6"] == ["2001:db8::9"] and found[("node_exporter", "tcp")]["ipv4"] == []


def test_alertmanager_gossip_opens_tcp_and_udp_between_the_peers():
    found = {(o["comment"], o["proto"]): o["ipv4"] for o in openings("am2")}
    assert found[("alertmanager_cluster", "tcp")] == found[("alertmanager_cluster", "udp")] == ["10.0.0.1", "10.0.0.2"]
    assert ("prometheus", "tcp") not in found, "am2 does not run Prometheus"


def test_admin_networks_reach_the_prometheus_ui_and_extra_rules_come_last():
    found = openings("mon1", admin=["192.168.0.0/16"], extra=[{"port": 443, "sources": ["0.0.0.0/0", "::/0"]}])
    prometheus = next(o for o in found if o["comment"] == "prometheus")
    assert prometheus["ipv4"] == ["192.168.0.0/16"] and prometheus["ipv6"] == ["2001:db8::9"]
    assert found[-1] == {"comment": "extra 0", "proto": "tcp", "port": 443, "sources": ["0.0.0.0/0", "::/0"],
                         "ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"]}


@pytest.mark.parametrize(("admin", "extra", "message"), [
    (["10.0.0.300/8"], [], "firewall_admin_sources: '10.0.0.300/8' is not an IP address or network"),
    ([], [{"port": 70000, "sources": ["10.0.0.0/8"]}], "firewall_rules_extra\\[0\\]: port '70000'"),
    ([], [{"port": 443, "proto": "sctp", "sources": ["10.0.0.0/8"]}], "must be tcp or udp"),
    ([], [{"port": 443, "sources": ["no-such-group"]}], "'no-such-group' is not an IP address or network"),
])
def test_bad_firewall_input_is_refused_naming_the_variable(admin, extra, message):
    with pytest.raises(AnsibleFilterError, match=message):
        openings("am1", admin=admin, extra=extra)


def test_known_services_of_the_host_s_groups_stay_open_to_their_sources():
    known = {"alertmanager": [{"port": 6379, "proto": "tcp"}], "nginx": [{"port": 80}]}
    found = firewall.firewall_openings("am1", FIREWALL_SERVICES, FIREWALL_GROUPS, inventory_hostvars(FIREWALL_HOSTVARS), [], [],
                                     known, ["0.0.0.0/0", "::/0"])
    redis = [o for o in found if o["port"] == 6379]
    assert redis == [{"comment": "alertmanager (firewall_known_services)", "proto": "tcp", "port": 6379,
                      "sources": ["0.0.0.0/0", "::/0"], "ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"]}]
    assert not [o for o in found if o["port"] == 80], "am1 is not in the nginx group"
    with pytest.raises(AnsibleFilterError, match=r"firewall_known_services.alertmanager: port 'x'"):
        firewall.firewall_openings("am1", FIREWALL_SERVICES, FIREWALL_GROUPS, inventory_hostvars(FIREWALL_HOSTVARS), [], [],
                                 {"alertmanager": [{"port": "x"}]}, ["all"])


def test_every_wrong_extra_opening_gets_a_line_of_its_own():
    rules = [{"port": 443, "sources": ["0.0.0.0/0", "prometheus", "admin"]},
             {"port": 70000, "proto": "sctp", "sources": ["fe80::1%eth0", "nowhere"], "colour": "red"},
             "443/tcp", {"port": 22, "sources": "10.0.0.0/8"}]
    assert firewall.firewall_rules_problems(rules, FIREWALL_GROUPS) == [
        "firewall_rules_extra[1]: port '70000' is not a number from 1 to 65535; proto 'sctp' must be tcp or udp; "
        "'fe80::1%eth0, nowhere' are not IP addresses, networks or inventory groups; "
        "'colour' are not settings of an opening (port, proto, sources, comment)",
        "firewall_rules_extra[2]: must be a dictionary {port, proto, sources, comment}",
        "firewall_rules_extra[3]: give sources: a list of addresses, networks or inventory groups"]
    assert firewall.firewall_rules_problems([], FIREWALL_GROUPS) == []


def test_a_cut_listener_is_named_with_the_entry_that_keeps_it_open():
    advice = firewall.firewall_cut_advice([{"port": 6379, "proto": "tcp", "address": "0.0.0.0", "pid": 812,
                                          "process": "redis-server"}])
    assert advice.startswith("firewall_rules_extra: 6379/tcp is listened on by redis-server (pid 812) on 0.0.0.0")
    assert "{port: 6379, proto: tcp, sources: ['0.0.0.0/0', '::/0'], comment: redis-server}" in advice
    assert "add '6379/tcp' to firewall_ports_closed" in advice
    assert firewall.firewall_cut_advice([]) == ""


def test_a_source_host_without_a_known_address_is_named():
    hostvars = {**FIREWALL_HOSTVARS, "mon1": {"ansible_host": "mon1.example"}}
    with pytest.raises(AnsibleFilterError, match="no IP address is known for mon1"):
        openings("am1", hostvars=hostvars)


def test_a_service_used_by_a_group_the_inventory_lacks_opens_to_the_others_only():
    services = {"prometheus": {**FIREWALL_SERVICES["prometheus"], "from": ["prometheus", "grafana"]}}
    found = firewall.firewall_openings("mon1", services, FIREWALL_GROUPS, inventory_hostvars(FIREWALL_HOSTVARS), [], [])
    assert [o["sources"] for o in found] == [["2001:db8::9"]]


def test_grafana_port_opens_to_admins_and_the_scrapers_as_the_firewall_table_says():
    """The real services table of roles/firewall: Grafana's port (grafana_port, 3000 by default, a host's
    override respected) on the grafana hosts only, to the admin networks, Prometheus and blackbox."""
    import yaml
    services = yaml.safe_load((REPO_ROOT / "roles/firewall/vars/main.yml").read_text())["_firewall_services"]
    groups = {"all": ["graf", "mon1", "bb1"], "grafana": ["graf"], "prometheus": ["mon1"], "blackbox": ["bb1"]}
    hostvars = {"graf": {"ansible_host": "10.0.0.3"}, "mon1": {"ansible_host": "10.0.0.1"},
                "bb1": {"ansible_host": "10.0.0.2"}}
    found = firewall.firewall_openings("graf", services, groups, inventory_hostvars(hostvars), ["192.168.0.0/16"], [])
    grafana = [o for o in found if o["comment"] == "grafana"]
    assert grafana == [{"comment": "grafana", "proto": "tcp", "port": 3000,
                        "sources": ["10.0.0.1", "10.0.0.2", "192.168.0.0/16"],
                        "ipv4": ["10.0.0.1", "10.0.0.2", "192.168.0.0/16"], "ipv6": []}]
    moved = {**hostvars, "graf": {"ansible_host": "10.0.0.3", "grafana_port": 3443}}
    assert [o["port"] for o in firewall.firewall_openings("graf", services, groups, inventory_hostvars(moved), [], [])
            if o["comment"] == "grafana"] == [3443]
    assert not [o for o in firewall.firewall_openings("mon1", services, groups, inventory_hostvars(hostvars), [], [])
                if o["comment"] == "grafana"], "mon1 runs no Grafana"


def test_victoriametrics_opens_to_the_prometheus_grafana_and_admin_hosts_only():
    """The real services table: remote_write from every Prometheus, queries from Grafana, the probe
    from blackbox, the API from the admin networks; nothing from another host of the inventory."""
    import yaml
    services = yaml.safe_load((REPO_ROOT / "roles/firewall/vars/main.yml").read_text())["_firewall_services"]
    groups = {"all": ["lts1", "mon1", "mon2", "graf", "web1"], "victoriametrics": ["lts1"],
              "prometheus": ["mon1", "mon2"], "grafana": ["graf"]}
    hostvars = {name: {"ansible_host": f"10.0.0.{index}"} for index, name in enumerate(groups["all"], 1)}
    found = [o for o in firewall.firewall_openings("lts1", services, groups, inventory_hostvars(hostvars), ["192.168.0.0/16"], [])
             if o["comment"] == "victoriametrics"]
    assert [(o["port"], o["sources"]) for o in found] == [
        (8428, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "192.168.0.0/16"])], "web1 (10.0.0.5) stays out"


VM_WEB = {"tls_server_config": {"cert_file": "/c", "key_file": "/k"}, "basic_auth_users": {"prometheus": "s3"}}


def test_every_prometheus_writes_to_every_victoriametrics_host_with_a_password_file_and_no_replica():
    vm_jobs = scrape.prometheus_scrape_jobs({"victoriametrics_write": {"group": "victoriametrics",
                                                                       "role": "victoriametrics"}},
                                            {"victoriametrics": ["lts1", "lts2"]},
                                            inventory_hostvars({"lts1": {"victoriametrics_web_config": VM_WEB, "ansible_host": "10.0.0.1"},
                                             "lts2": {"victoriametrics_web_config": VM_WEB,
                                                      "victoriametrics_port": 8429}}), "prometheus")
    entries = scrape.prometheus_remote_write_configs(vm_jobs, "/etc/monstack/tls/ca.crt", "/etc/prometheus/secrets",
                                                     {"max_shards": 10})
    assert [(e["name"], e["url"]) for e in entries] == [("lts1", "https://10.0.0.1:8428/api/v1/write"),
                                                         ("lts2", "https://lts2:8429/api/v1/write")]
    for entry in entries:
        assert entry["basic_auth"] == {"username": "prometheus",
                                       "password_file": "/etc/prometheus/secrets/victoriametrics_write.password"}
        assert entry["tls_config"] == {"ca_file": "/etc/monstack/tls/ca.crt"}
        assert entry["queue_config"] == {"max_shards": 10}
        assert entry["write_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert "s3" not in repr(entries), "the password is read from its file"
    assert scrape.prometheus_remote_write_configs([], "", "/s") == []


@pytest.mark.parametrize("hostvars, interval", [
    ({}, "15s"),
    ({"mon1": {"prometheus_scrape_interval": "30s"}}, "30s"),
    ({"mon1": {"prometheus_scrape_interval": "1m"}, "mon2": {"prometheus_scrape_interval": "10s"}}, "60s"),
    ({"mon1": {"prometheus_scrape_interval": "1500ms"}}, "15s"),
])
def test_the_deduplication_interval_follows_the_longest_scrape_interval_of_the_pair(hostvars, interval):
    groups = {"prometheus": ["mon1", "mon2"]}
    assert scrape.victoriametrics_dedup_interval(groups, inventory_hostvars({"mon1": {}, "mon2": {}, **hostvars}),
                                                 "15s") == interval
    assert scrape.victoriametrics_dedup_interval({}, {}, "20s") == "20s", "no Prometheus: the stack's value"


def test_a_scrape_interval_the_deduplication_cannot_follow_is_named():
    with pytest.raises(AnsibleFilterError, match="mon1: prometheus_scrape_interval '15 s'"):
        scrape.victoriametrics_dedup_interval({"prometheus": ["mon1"]}, {"mon1": {"prometheus_scrape_interval": "15 s"}},
                                              "15s")


BACKUP_CATALOGUE = {
    "prometheus": {"group": "prometheus", "data_var": "prometheus_data_dir", "method": "prometheus_tsdb"},
    "grafana": {"group": "grafana", "data_var": "grafana_data_dir", "method": "sqlite",
                "only_when": {"var": "grafana_database_type", "equals": "sqlite3"}},
}


def test_backup_components_follow_groups_and_each_hosts_data_directory():
    """The data directories and Grafana's database are the hosts' variables (group_vars/all/data.yml, or
    the inventory's): what the daemon's role writes to is what the backup copies."""
    groups = {"prometheus": ["a", "b"], "grafana": ["b"]}
    hostvars = {"a": {}, "b": {"prometheus_data_dir": "/srv/prom/"}}

    def components(host, disabled=None):
        return [(c["name"], c["data_dir"]) for c in backup.backup_components(
            BACKUP_CATALOGUE, host, groups, inventory_hostvars(hostvars), disabled)]

    assert components("a") == [("prometheus", "/var/lib/prometheus/data")]
    assert components("b") == [("grafana", "/var/lib/grafana"), ("prometheus", "/srv/prom")]
    assert components("b", ["grafana", "prometheus"]) == []
    hostvars["b"]["grafana_database_type"] = "postgres"
    assert components("b") == [("prometheus", "/srv/prom")]


def test_a_data_directory_that_is_not_set_is_refused_naming_the_variable_and_where_it_is_defined():
    with pytest.raises(AnsibleFilterError, match=r"a: prometheus_data_dir is not set.*group_vars/all/data.yml"):
        backup.backup_components(BACKUP_CATALOGUE, "a", {"prometheus": ["a"]}, {"a": {}})


def test_the_blackbox_modules_come_from_the_exporter_hosts_variables():
    groups = {"all": ["web1", "mon1"], "blackbox": ["mon1"]}
    own = {"mon1": {"blackbox_exporter_modules": {"ping": {"prober": "icmp"}}}}
    assert scrape.prometheus_probe_configs([{"module": "ping", "targets": ["web1"]}], [], groups,
                                           inventory_hostvars(own), "prometheus")[0]["job_name"] == "blackbox_ping"
    with pytest.raises(AnsibleFilterError, match=r"mon1: blackbox_exporter_modules is not set.*group_vars/all/probes"):
        scrape.prometheus_probe_configs([{"module": "icmp", "targets": ["web1"]}], [], groups,
                                        {"web1": {}, "mon1": {"blackbox_exporter_port": 9115}}, "prometheus")


@pytest.mark.parametrize(("listen", "allowed"), [
    ("0.0.0.0:8428", []), ("[::]:8428", []), (None, []), ("127.0.0.1:8428", []), ("[::1]:8428", []),
    ("10.0.0.5:8428", ["10.0.0.5"]), ("[fd00::5]:8428", ["fd00::5"]),
    ("vm1.example.net:8428", ["10.0.0.5", "10.1.0.5", "fd00::5", "fe80::1"]),
])
def test_the_backup_of_victoriametrics_may_reach_the_address_its_server_listens_on(listen, allowed):
    """Its unit reaches loopback only (templates/vmbackup.conf.j2); a server bound to one address is
    asked there (monstack-backup's _vm_base_url), so that address is allowed too; a host name is one
    of the host's own addresses."""
    own = ["10.0.0.5", "10.1.0.5", "fd00::5", "fe80::1%eth0"]
    assert backup.backup_server_addresses(listen, own) == allowed


@pytest.mark.parametrize(("data_dir", "disabled", "message"), [
    ("/var/lib", [], "prometheus_data_dir: '/var/lib' is not a data directory"),
    ("data", [], "prometheus_data_dir: 'data' is not a data directory"),
    ("/srv/prom", ["loki"], "unknown component(s) loki"),
])
def test_backup_components_refuse_what_a_restore_would_wreck(data_dir, disabled, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        backup.backup_components(BACKUP_CATALOGUE, "a", {"prometheus": ["a"]}, {"a": {"prometheus_data_dir": data_dir}},
                                 disabled)
