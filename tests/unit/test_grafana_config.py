"""roles/grafana renders what upstream documents: every grafana.ini key it sets exists in upstream's
defaults.ini, and the provisioning files use only the fields upstream's provisioning documentation
names (tests/reference/grafana/, copied verbatim from upstream; about Grafana 10.0).

Grafana has no offline checker for its configuration, and the molecule scenario runs a stand-in, not
Grafana (README, "What is verified, and how"): these tests are where the keys are checked.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import BIN, REPO_ROOT, inventory_hostvars, load_module, playbook_command, playbook_env, write_inventory

REFERENCE = REPO_ROOT / "tests" / "reference" / "grafana"
RENDER_PLAYBOOK = REPO_ROOT / "tests" / "render" / "role_templates.yml"
DASHBOARDS = REPO_ROOT / "roles" / "grafana" / "files" / "dashboards"

# Keys the role may set that the reference defaults.ini (about 10.0) lacks, each with its source in
# current upstream documentation. Empty today: every key the role sets is in the 10.0 file.
INI_KEYS_FROM_CURRENT_DOCS: dict[tuple[str, str], str] = {}

# Data source settings the provisioning reference's tables lack, each with its upstream source.
JSON_DATA_FROM_DATASOURCE_DOCS = {
    # https://grafana.com/docs/grafana/latest/datasources/alertmanager/#provision-the-alertmanager-data-source
    "implementation": "Alertmanager data source docs, provisioning example",
    "handleGrafanaManagedAlerts": "Alertmanager data source docs, provisioning example",
    # https://grafana.com/docs/grafana/latest/datasources/loki/configure-loki-data-source/#provision-the-data-source
    "maxLines": "Loki data source docs, provisioning example",
}

CA = "-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----\n"
CLIENT_CERT = "-----BEGIN CERTIFICATE-----\nMIIBgrafanahost\n-----END CERTIFICATE-----\n"
CLIENT_KEY = "-----BEGIN PRIVATE KEY-----\nMIIBgrafanakey\n-----END PRIVATE KEY-----\n"
# Loki as group_vars/all/stack.yml wires it: only clients with a certificate of the stack's CA.
LOKI_MTLS = {"tls_server_config": {"cert_file": "/etc/monstack/tls/host.crt", "key_file": "/etc/monstack/tls/host.key",
                                   "client_ca_file": "/etc/monstack/tls/ca.crt",
                                   "client_auth_type": "RequireAndVerifyClientCert"}}
# Grafana renders on graf; two Prometheus hosts (one on another port), an Alertmanager, VictoriaMetrics
# and, in the default variant, Loki.
GROUPS = {"grafana": ["graf"], "prometheus": ["mon1", "mon2"], "alertmanager": ["mon1"], "victoriametrics": ["lts1"]}
OTHERS = {"mon1": {"ansible_host": "10.0.0.9"}, "mon2": {"ansible_host": "10.0.0.10", "prometheus_port": 9091},
          "loki1": {"ansible_host": "10.0.0.7"}, "lts1": {"ansible_host": "10.0.0.11"}}
COMMON = {"grafana_admin_password": "render-test-password-1", "grafana_secret_key": "render-test-secret-key",
          # The role's facts of the CA, client certificate and key, which it reads from the host.
          "_grafana_ca_pem": CA, "_grafana_client_cert_pem": "", "_grafana_client_key_pem": "",
          "render_role": "grafana", "render_hosts": "grafana",
          "render_templates": ["grafana.ini", "datasources.yaml", "dashboards.yaml"],
          "grafana_web_config": {"tls_server_config": {"cert_file": "/etc/monstack/tls/host.crt",
                                                       "key_file": "/etc/monstack/tls/host.key"},
                                 "basic_auth_users": {"prometheus": "render-scrape-password"}}}
VARIANTS = {
    # As the stack wires it: Loki requires client certificates, and Grafana presents its host's.
    "default": ({"loki_web_config": LOKI_MTLS,
                 "grafana_datasource_client_cert_file": "/etc/monstack/tls/host.crt",
                 "grafana_datasource_client_key_file": "/etc/monstack/tls/host.key",
                 "_grafana_client_cert_pem": CLIENT_CERT, "_grafana_client_key_pem": CLIENT_KEY}, True),
    # Everything optional switched on: PostgreSQL, SMTP, a grafana_ini override, Prometheus behind
    # basic auth; no Loki host.
    "full": ({"grafana_database_type": "postgres", "grafana_database_password": "render-db-password",
              "grafana_smtp": {"enabled": True, "host": "smtp.example.test:587", "user": "grafana",
                               "password": "render-smtp-password", "from_address": "grafana@example.test",
                               "startTLS_policy": "MandatoryStartTLS"},
              "grafana_ini": {"auth": {"disable_login_form": False},
                              # go-ini would cut a bare value at "#" or ";" (an inline comment).
                              "auth.generic_oauth": {"name": "SSO #1; staff"}},
              # Grafana expands $NAME in provisioning files: the data source must hold $$.
              "grafana_datasource_username": "grafana",
              "alertmanager_web_config": {"tls_server_config": {"cert_file": "/c", "key_file": "/k"},
                                          "basic_auth_users": {"prometheus": "p", "grafana": "render-am-password"}},
              "prometheus_web_config": {"tls_server_config": {"cert_file": "/c", "key_file": "/k"},
                                        "basic_auth_users": {"prometheus": "p",
                                                             "grafana": "render-prom-$HOME-password"}},
              # VictoriaMetrics has one user: here the one Grafana queries as.
              "victoriametrics_web_config": {"tls_server_config": {"cert_file": "/c", "key_file": "/k"},
                                             "basic_auth_users": {"grafana": "render-vm-password"}}},
             False),
}


def _start(out: Path, extra: dict, loki: bool) -> subprocess.Popen:
    out.mkdir(parents=True)
    inventory = write_inventory(out / "inventory" / "render", {**GROUPS, **({"loki": ["loki1"]} if loki else {})},
                                local="graf", others=OTHERS)
    command = playbook_command(RENDER_PLAYBOOK, {"render_out": str(out / "files"), **COMMON, **extra}, inventory)
    log = (out / "render.log").open("w")
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=playbook_env(out))


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """The role's files rendered with the defaults and with everything optional on, both at once."""
    base = tmp_path_factory.mktemp("grafana")
    started = {name: _start(base / name, extra, loki) for name, (extra, loki) in VARIANTS.items()}
    result = {}
    for name, process in started.items():
        assert process.wait(timeout=300) == 0, (base / name / "render.log").read_text()[-4000:]
        result[name] = base / name / "files"
    return result


def _ini(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string("[__root__]\n" + text)
    return parser


def _keys(parser: configparser.RawConfigParser) -> set[tuple[str, str]]:
    return {(section, key) for section in parser.sections() for key in parser.options(section)}


UPSTREAM_KEYS = _keys(_ini((REFERENCE / "defaults.ini").read_text()))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_grafana_ini_key_exists_in_upstream_defaults(rendered, variant):
    keys = _keys(_ini((rendered[variant] / "grafana.ini").read_text()))
    unknown = sorted(keys - UPSTREAM_KEYS - set(INI_KEYS_FROM_CURRENT_DOCS))
    assert keys, "nothing rendered"
    assert unknown == [], f"grafana.ini sets keys upstream's defaults.ini does not have: {unknown}"


def test_the_rendered_ini_is_secure_by_default(rendered):
    ini = _ini((rendered["default"] / "grafana.ini").read_text())
    expected = {
        ("server", "protocol"): "https", ("server", "cert_file"): "/etc/monstack/tls/host.crt",
        ("server", "cert_key"): "/etc/monstack/tls/host.key", ("security", "cookie_secure"): "true",
        ("security", "strict_transport_security"): "true", ("security", "disable_gravatar"): "true",
        ("users", "allow_sign_up"): "false", ("users", "allow_org_create"): "false",
        ("auth.anonymous", "enabled"): "false", ("analytics", "reporting_enabled"): "false",
        ("analytics", "check_for_updates"): "false", ("analytics", "check_for_plugin_updates"): "false",
        ("snapshots", "external_enabled"): "false", ("database", "type"): "sqlite3",
        ("metrics", "basic_auth_username"): "prometheus",
    }
    assert {key: ini.get(*key) for key in expected} == expected


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_grafana_ini_holds_no_secret_only_file_references(rendered, variant):
    text = (rendered[variant] / "grafana.ini").read_text()
    for secret in ["render-test-password-1", "render-test-secret-key", "render-scrape-password",
                   "render-db-password", "render-smtp-password"]:
        assert secret not in text
    references = dict((key, value) for key, value in
                      ((key, _ini(text).get(*key)) for key in _keys(_ini(text))) if "$__file{" in value)
    expected = {("security", "admin_password"), ("security", "secret_key"), ("metrics", "basic_auth_password")}
    if variant == "full":
        expected |= {("database", "password"), ("smtp", "password")}
    assert set(references) == expected
    assert all(re.fullmatch(r"\$__file\{/etc/grafana/secrets/[a-z_]+\}", value) for value in references.values())


def _documented_datasource_fields() -> tuple[set, set, set]:
    """Fields of a data source, of jsonData and of secureJsonData, as provisioning-index.md lists them."""
    doc = (REFERENCE / "provisioning-index.md").read_text()
    example = doc.split("### Example data source Config File", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    entry = yaml.safe_load(example)["datasources"][0]

    def table(heading: str) -> set:
        section = doc.split(heading, 1)[1].split("\n#", 1)[0]
        return {row.split("|")[1].strip() for row in section.splitlines()
                if row.startswith("|") and not row.startswith("| Name") and not row.startswith("| ---")}
    return set(entry), table("#### JSON Data"), table("#### Secure Json Data")


def test_the_reference_tables_were_read():
    fields, json_data, secure = _documented_datasource_fields()
    assert {"name", "type", "url", "basicAuth", "secureJsonData"} <= fields
    assert {"tlsAuthWithCACert", "tlsAuth", "httpMethod", "timeInterval"} <= json_data
    assert {"tlsCACert", "tlsClientCert", "tlsClientKey", "basicAuthPassword"} <= secure


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_datasources_use_only_documented_fields(rendered, variant):
    fields, json_data, secure = _documented_datasource_fields()
    content = yaml.safe_load((rendered[variant] / "datasources.yaml").read_text())
    assert set(content) == {"apiVersion", "datasources"} and content["apiVersion"] == 1
    for source in content["datasources"]:
        assert set(source) <= fields, source["name"]
        assert set(source.get("jsonData", {})) <= json_data | set(JSON_DATA_FROM_DATASOURCE_DOCS), source["name"]
        assert set(source.get("secureJsonData", {})) <= secure, source["name"]
    assert sum(1 for source in content["datasources"] if source["isDefault"]) == 1


def test_datasources_come_from_the_inventory_over_https_trusting_the_ca(rendered):
    sources = {s["name"]: s for s in yaml.safe_load((rendered["default"] / "datasources.yaml").read_text())["datasources"]}
    assert sorted(sources) == ["Alertmanager", "Loki", "Prometheus", "Prometheus mon2", "VictoriaMetrics"]
    assert sources["Prometheus"]["url"] == "https://10.0.0.9:9090" and sources["Prometheus"]["isDefault"]
    assert sources["Prometheus mon2"]["url"] == "https://10.0.0.10:9091", "a host's own port override"
    assert sources["Alertmanager"]["url"] == "https://10.0.0.9:9093"
    assert sources["Alertmanager"]["type"] == "alertmanager"
    assert sources["Loki"]["url"] == "https://10.0.0.7:3100", "Loki on the stack's loki_port by default"
    # Long-term storage, a Prometheus-type source the dashboards' data source variable lists.
    assert sources["VictoriaMetrics"]["url"] == "https://10.0.0.11:8428"
    assert sources["VictoriaMetrics"]["type"] == "prometheus" and not sources["VictoriaMetrics"]["isDefault"]
    assert sources["VictoriaMetrics"]["uid"] == "victoriametrics"
    for source in sources.values():
        assert source["jsonData"]["tlsAuthWithCACert"] is True and source["secureJsonData"]["tlsCACert"] == CA
    # The stack's Prometheus and Alertmanager require the stack's user; Loki has no basic auth.
    for name in ("Prometheus", "Prometheus mon2", "Alertmanager", "VictoriaMetrics"):
        assert sources[name]["basicAuth"] is True and sources[name]["basicAuthUser"] == "prometheus", name
        assert sources[name]["secureJsonData"]["basicAuthPassword"], name
    assert "basicAuth" not in sources["Loki"]


def test_the_loki_data_source_presents_the_grafana_hosts_certificate_and_no_other_does(rendered):
    sources = {s["name"]: s for s in yaml.safe_load((rendered["default"] / "datasources.yaml").read_text())["datasources"]}
    loki = sources["Loki"]
    assert loki["jsonData"]["tlsAuth"] is True
    assert (loki["secureJsonData"]["tlsClientCert"], loki["secureJsonData"]["tlsClientKey"]) == (CLIENT_CERT, CLIENT_KEY)
    for name in ("Prometheus", "Prometheus mon2", "Alertmanager"):
        assert "tlsAuth" not in sources[name]["jsonData"], name
        assert not {"tlsClientCert", "tlsClientKey"} & set(sources[name]["secureJsonData"]), name
    outside = {key: value for key, value in loki.items() if key != "secureJsonData"}
    assert "MIIBgrafanakey" not in json.dumps(outside), "the key goes to secureJsonData only"


def test_a_data_source_requiring_a_client_certificate_without_one_to_present_is_refused_naming_the_variables():
    grafana = load_module("plugins/filter/grafana.py", "monstack_grafana")
    hostvars = {"loki1": {"loki_web_config": LOKI_MTLS}}
    with pytest.raises(AnsibleFilterError, match="loki1: loki_web_config requires a client certificate.*"
                                        "grafana_datasource_client_cert_file and grafana_datasource_client_key_file"):
        grafana.grafana_datasources({"loki": ["loki1"]}, inventory_hostvars(hostvars), "prometheus", CA)
    # A Loki without client authentication asks for nothing.
    plain = grafana.grafana_datasources({"loki": ["loki1"]}, inventory_hostvars({"loki1": {}}), "prometheus", CA)
    assert "tlsAuth" not in plain[0]["jsonData"]


def test_basic_auth_password_goes_to_secure_json_data_only(rendered):
    sources = yaml.safe_load((rendered["full"] / "datasources.yaml").read_text())["datasources"]
    prometheus = next(s for s in sources if s["name"] == "Prometheus")
    assert prometheus["basicAuth"] is True and prometheus["basicAuthUser"] == "grafana"
    assert prometheus["secureJsonData"]["basicAuthPassword"] == "render-prom-$$HOME-password", \
        "a $ of the password must reach Grafana doubled, or Grafana replaces $HOME with its environment"
    outside = {key: value for key, value in prometheus.items() if key != "secureJsonData"}
    assert "render-prom-" not in json.dumps(outside)


def test_a_grafana_ini_value_with_a_comment_character_is_written_between_backticks(rendered):
    """go-ini reads a value between backticks literally; bare, it would end at the "#"."""
    text = (rendered["full"] / "grafana.ini").read_text()
    assert "\nname = `SSO #1; staff`\n" in text


def test_provisioning_literal_doubles_every_dollar_of_every_string_and_keeps_the_rest():
    literal = load_module("plugins/filter/grafana.py", "monstack_grafana").grafana_provisioning_literal
    given = {"name": "Prometheus $x", "jsonData": {"timeInterval": "15s", "list": ["a$", "${HOME}"]},
             "secureJsonData": {"basicAuthPassword": "p$$w"}, "isDefault": True, "orgId": 1, "$key": "v"}
    assert literal(given) == {"name": "Prometheus $$x", "jsonData": {"timeInterval": "15s", "list": ["a$$", "$${HOME}"]},
                              "secureJsonData": {"basicAuthPassword": "p$$$$w"}, "isDefault": True, "orgId": 1,
                              "$key": "v"}


def test_no_loki_data_source_without_a_loki_host(rendered):
    sources = yaml.safe_load((rendered["full"] / "datasources.yaml").read_text())["datasources"]
    assert [s["type"] for s in sources if s["type"] == "loki"] == []


def test_dashboard_provider_uses_only_documented_fields(rendered):
    doc = (REFERENCE / "provisioning-index.md").read_text()
    example = doc.split("The dashboard provider config file looks somewhat like this:", 1)[1]
    example = yaml.safe_load(example.split("```yaml", 1)[1].split("```", 1)[0])["providers"][0]
    content = yaml.safe_load((rendered["default"] / "dashboards.yaml").read_text())
    assert set(content) == {"apiVersion", "providers"} and content["apiVersion"] == 1
    for provider in content["providers"]:
        assert set(provider) <= set(example)
        assert set(provider["options"]) <= set(example["options"])
        # "folder and folderUid options should be empty or missing to make foldersFromFilesStructure work"
        assert provider["options"]["foldersFromFilesStructure"] and not provider.get("folder")


# The dashboards themselves (files in the repository).

def dashboards() -> dict[str, dict]:
    return {str(path.relative_to(DASHBOARDS)): json.loads(path.read_text()) for path in sorted(DASHBOARDS.rglob("*.json"))}


def expressions(node) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets, nested rows and annotations."""
    if isinstance(node, dict):
        return ([node["expr"]] if isinstance(node.get("expr"), str) else []) + \
            [e for key, value in node.items() if key != "expr" for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_the_dashboards_fill_the_folders_the_design_names():
    folders = {path.split("/")[0] for path in dashboards()}
    assert folders == {"Application Overview", "Database Performance", "Cache Performance", "System Health",
                       "Monitoring Stack"}
    titles = {d["title"] for d in dashboards().values()}
    assert {"PostgreSQL", "MongoDB", "Redis"} <= titles


def test_dashboards_have_unique_uids_and_query_the_chosen_prometheus():
    found = dashboards()
    uids = [d["uid"] for d in found.values()]
    assert len(uids) == len(set(uids)) and all(uids)
    for name, dashboard in found.items():
        assert dashboard["refresh"] == "30s", name
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, panel["title"])


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    """promtool parses each expression as a recording rule; the molecule scenario then evaluates them."""
    promtool = BIN / "promtool"
    assert promtool.is_file(), f"{promtool} is missing: `make .venv/bin/promtool`"
    rules = [{"record": f"dashboard:expr_{index}", "expr": expr}
             for index, expr in enumerate(e for d in dashboards().values() for e in expressions(d))]
    assert len(rules) > 50
    (tmp_path / "dashboards.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([str(promtool), "check", "rules", str(tmp_path / "dashboards.rules.yml")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# What the dashboards read: the job and instance variables, the recording rules, the guides' panels.

RULE_TEMPLATES = REPO_ROOT / "roles" / "prometheus" / "templates" / "rules"
BENCH_APP = REPO_ROOT / "molecule" / "grafana" / "files" / "bench_app.py"
VARIABLES = ("job", "instance")
# Every variable is multi-valued with an "All" that Grafana sends as this regex, which the molecule
# scenario puts in its place to evaluate each expression.
ALL_VALUE = ".+"
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?), (?P<label>\w+)\)$")
# PromQL words that are not series: aggregation modifiers, set and comparison operators.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset"}

# The panels the monitoring guides ask for (../shared/seeds), each by dashboard, title and the series it
# must read: the guides' metric names, or the recording rule that records them.
GUIDE_PANELS = {
    "Application Overview/application-overview.json": {
        "Request rate by service": {"job_status:http_requests:rate5m"},
        "Request rate by method and path": {"job_method_path:http_requests:rate5m"},
        "Errors by status": {"job_status:http_requests:rate5m"},
        "Error rate (5xx share)": {"job:http_requests_errors:ratio_rate5m"},
        "Requests per second": {"job_status:http_requests:rate5m"},
        "Requests in flight": {"http_requests_in_flight"},
        "Active users": {"active_users"},
        "Active WebSocket connections": {"websocket_connections_total"},
        "Response time percentiles": {"job:http_request_duration_seconds:p50_rate5m",
                                      "job:http_request_duration_seconds:p95_rate5m",
                                      "job:http_request_duration_seconds:p99_rate5m"},
        "Top endpoints by traffic": {"job_method_path:http_requests:rate5m"},
        "Socket.IO and WebSocket active connections": {"socketio_connections", "websocket_active_connections"},
        "Realtime messages per second": {"realtime_messages_processed_total"},
        "WebSocket messages and errors": {"websocket_messages_total", "websocket_errors_total"},
        "WebSocket disconnects (5m)": {"websocket_disconnections_total"},
        "Messages and registrations per second": {"chat_messages_created_total", "chat_users_registered_total"},
        "Active voice sessions": {"voice_active_sessions"},
        "Voice latency p95": {"voice_session_latency_seconds_bucket"},
        "Audio throughput": {"voice_audio_bytes_received_total", "voice_audio_bytes_sent_total"},
        "Voice session errors": {"voice_session_errors_total"},
        "Failed logins, rate-limit hits, blocked IPs": {"auth_failed_attempts_total", "rate_limit_hits_total",
                                                        "suspicious_ip_blocks_total"},
        "nginx requests": {"nginx_http_requests_total"},
    },
    "System Health/system-health.json": {
        "CPU usage": {"instance:node_cpu_utilisation:rate5m"},
        "Memory usage": {"instance:node_memory_utilisation:ratio"},
        "Disk usage": {"instance:node_filesystem_usage:ratio"},
        "Load average": {"node_load1", "node_load5", "node_load15"},
        "Load per CPU": {"instance:node_load1_per_cpu:ratio"},
        "Disk I/O time": {"node_disk_io_time_seconds_total"},
        "Network traffic": {"instance:node_network_receive_bytes:rate5m",
                            "instance:node_network_transmit_bytes:rate5m"},
        "Network errors": {"node_network_receive_errs_total", "node_network_transmit_errs_total"},
        "Process CPU": {"process_cpu_seconds_total"},
        "Process resident memory": {"process_resident_memory_bytes"},
    },
    "Database Performance/postgresql.json": {
        "Connections in use": {"instance:pg_connections:ratio"},
        "Cache hit ratio": {"instance:pg_cache_hit:ratio_rate5m"},
        "Query rate (pg_stat_statements)": {"pg_stat_statements_calls_total"},
        "Transactions": {"instance:pg_xact_commit:rate5m"},
        "Connections vs max": {"pg_stat_database_numbackends", "pg_settings_max_connections"},
    },
    "Database Performance/mongodb.json": {
        "Operations": {"mongodb_op_counters_total"},
        "Connections": {"mongodb_connections"},
    },
    "Cache Performance/redis.json": {
        "Hit rate": {"instance:redis_keyspace_hit:ratio_rate5m"},
        "Clients of maxclients": {"instance:redis_connections:ratio"},
        "Memory used vs limit": {"redis_memory_used_bytes"},
        "Connected clients": {"redis_connected_clients"},
        "Commands": {"instance:redis_commands:rate5m"},
    },
}


def series_names(expr: str) -> set[str]:
    """The metric and recording-rule names a PromQL expression (or a rule template's, Jinja and all) reads."""
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    text = re.sub(r"\{[^{}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name not in PROMQL_WORDS}


def recording_rules() -> dict[str, str]:
    """record -> expr of every recording rule of the rule library, read from the templates (their
    recording rules hold no Jinja but a filter of node.rules, which series_names skips)."""
    found = {}
    for path in sorted(RULE_TEMPLATES.glob("*.rules.yml.j2")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            record = re.match(r"^(\s*)- record: (\S+)\s*$", line)
            if not record:
                continue
            indent = len(record.group(1)) + 2
            expr = re.match(r"^\s*expr: ?(.*)$", lines[index + 1])
            assert expr, f"{path.name}: no expr under record {record.group(2)}"
            body = [expr.group(1)] if expr.group(1) not in (">-", ">", "|", "|-") else []
            for following in lines[index + 2:]:
                if len(following) - len(following.lstrip()) <= indent or not following.strip():
                    break
                body.append(following.strip())
            found[record.group(2)] = " ".join(body)
    return found


def panels(dashboard: dict) -> list[dict]:
    """Every panel that is not a row, rows' nested panels included."""
    return [p for top in dashboard["panels"] for p in [top] + top.get("panels", []) if p["type"] != "row"]


def test_the_series_names_of_an_expression_are_read_right():
    assert series_names('sum by (job, le) (rate(x_bucket{job=~"$job", le!="+Inf"}[5m])) / on (instance) y') \
        == {"x_bucket", "y"}
    assert series_names("count(up{job=~\"$job\"} == 0) or vector(0)") == {"up"}
    jinja = "1 - node_filesystem_avail_bytes{ {{- real_fs -}} } / node_filesystem_size_bytes{ {{- real_fs -}} }"
    assert series_names(jinja) == {"node_filesystem_avail_bytes", "node_filesystem_size_bytes"}
    assert series_names("instance:node_cpu_utilisation:rate5m{instance=~\"$instance\"} * 100 > 1e-06") \
        == {"instance:node_cpu_utilisation:rate5m"}


def test_the_recording_rules_were_read():
    rules = recording_rules()
    assert series_names(rules["instance:node_cpu_utilisation:rate5m"]) == {"node_cpu_seconds_total"}
    assert series_names(rules["instance:node_filesystem_usage:ratio"]) == {"node_filesystem_avail_bytes",
                                                                           "node_filesystem_size_bytes"}
    assert series_names(rules["job:http_requests_errors:ratio_rate5m"]) == {"http_requests_total"}
    assert len(rules) >= 15 and all(series_names(expr) for expr in rules.values()), rules


def test_every_dashboard_has_job_and_instance_variables_from_its_prometheus():
    for name, dashboard in dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        order = [v["name"] for v in dashboard["templating"]["list"]]
        for wanted in VARIABLES:
            assert wanted in variables, f"{name}: no `{wanted}` variable"
            variable = variables[wanted]
            assert variable["type"] == "query" and variable["datasource"] == {"type": "prometheus",
                                                                               "uid": "${datasource}"}, (name, wanted)
            query = LABEL_VALUES.match(variable["query"])
            assert query and query["label"] == wanted, f"{name}: `{wanted}` is not label_values(..., {wanted})"
            assert variable["definition"] == variable["query"], (name, wanted)
            assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ALL_VALUE, (name, wanted)
            assert variable["current"]["value"] == ["$__all"], f"{name}: `{wanted}` should start on All"
            # A variable may narrow by the ones before it only (Grafana resolves them in order).
            for other in re.findall(r"\$(\w+)", variable["query"]):
                assert other in order[:order.index(wanted)], f"{name}: `{wanted}` reads ${other}, not defined before it"


def test_every_panel_narrows_by_the_job_or_instance_variable():
    for name, dashboard in dashboards().items():
        used = set()
        for panel in panels(dashboard):
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                found = set(re.findall(r"\$\{?(\w+)", target["expr"]))
                assert found & set(VARIABLES), \
                    f"{name}: '{panel['title']}' ignores $job and $instance: {target['expr']}"
                assert found <= set(VARIABLES), f"{name}: '{panel['title']}' reads variables {found - set(VARIABLES)}"
                # As a label matcher's regex, the only way multi-valued and All values fit.
                assert not re.search(r'[^~]"\$', target["expr"]), \
                    f"{name}: '{panel['title']}' matches a variable with = not =~"
                used |= found
        assert used == set(VARIABLES), f"{name}: no panel reads {set(VARIABLES) - used}"


def test_the_application_job_variable_hides_the_stacks_own_jobs_but_nginx():
    """Application Overview lists the application jobs (prometheus_targets) and nginx, whose row it
    has; the stack's other exporters are the other dashboards' business."""
    variable = next(v for v in dashboards()["Application Overview/application-overview.json"]["templating"]["list"]
                    if v["name"] == "job")
    pattern = re.compile(variable["regex"].strip("/"))
    prometheus_vars = yaml.safe_load((REPO_ROOT / "roles" / "prometheus" / "vars" / "main.yml").read_text())
    kinds = prometheus_vars["_prometheus_scrape_kinds"]
    shown = {job for job in [*kinds, "blackbox_tls_stack", "blackbox_http_2xx", "app", "plugspace-voice"]
             if pattern.fullmatch(job)}
    assert shown == {"nginx", "app", "plugspace-voice"}


def test_no_panel_computes_what_a_recording_rule_records():
    """A panel reads the rule, not the raw series the rule reads: one evaluation by Prometheus, the
    same numbers as the alerts built on it."""
    rules = {record: series_names(expr) for record, expr in recording_rules().items()}
    raw = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel["targets"]:
                reads = series_names(target["expr"])
                records = sorted(record for record, inputs in rules.items() if inputs <= reads)
                if records:
                    raw.append(f"{name}: '{panel['title']}' reads {' or '.join(records)} raw: {target['expr']}")
    assert raw == [], "\n".join(raw)


def test_every_recording_rule_is_on_a_dashboard():
    read = {series for dashboard in dashboards().values() for series in series_names(" ".join(expressions(dashboard)))}
    unused = sorted(set(recording_rules()) - read)
    assert unused == [], f"recording rules no dashboard reads: {unused}"


@pytest.mark.parametrize("dashboard", sorted(GUIDE_PANELS))
def test_the_guides_panels_are_on_the_dashboards(dashboard):
    found = {panel["title"]: series_names(" ".join(t["expr"] for t in panel["targets"]))
             for panel in panels(dashboards()[dashboard])}
    missing = {title: sorted(series - found.get(title, set())) for title, series in GUIDE_PANELS[dashboard].items()
               if not series <= found.get(title, set())}
    assert missing == {}, f"{dashboard}: panels missing, or not reading these series: {missing}"


def test_request_rate_by_service_is_per_job():
    panel = next((p for p in panels(dashboards()["Application Overview/application-overview.json"])
                  if p["title"] == "Request rate by service"), None)
    assert panel, "no 'Request rate by service' panel (warehouse guide)"
    assert [t["expr"].startswith("sum by (job) (") for t in panel["targets"]] == [True]


def test_the_bench_application_exports_every_application_series_the_dashboards_read():
    """molecule/grafana evaluates every expression against the bench application: a panel on a series it
    does not export would fail there; this says so before the scenario runs."""
    bench = load_module(str(BENCH_APP.relative_to(REPO_ROOT)), "monstack_bench_app")
    exported = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", bench.exposition().decode(), re.M):
        exported |= {family + suffix for suffix in ("_bucket", "_sum", "_count")} if kind == "histogram" else {family}
    rules = recording_rules()
    read = set()
    targets = [t["expr"] for p in panels(dashboards()["Application Overview/application-overview.json"])
               for t in p["targets"]]
    for series in series_names(" ".join(targets)):
        read |= series_names(rules[series]) if series in rules else {series}
    application = {series for series in read if not series.startswith("nginx_")}
    assert application - exported == set(), f"the bench application does not export {sorted(application - exported)}"
