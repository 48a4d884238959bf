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
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import REPO_ROOT, load_module

BIN = Path(sys.executable).parent
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
# Loki as inventories/stack_defaults.yml wires it: only clients with a certificate of the stack's CA.
LOKI_MTLS = {"tls_server_config": {"cert_file": "/etc/monstack/tls/host.crt", "key_file": "/etc/monstack/tls/host.key",
                                   "client_ca_file": "/etc/monstack/tls/ca.crt",
                                   "client_auth_type": "RequireAndVerifyClientCert"}}
INVENTORY = """\
all:
  hosts:
    graf: {ansible_connection: local, ansible_python_interpreter: %(python)s}
    mon1: {ansible_host: 10.0.0.9}
    mon2: {ansible_host: 10.0.0.10, prometheus_port: 9091}
    loki1: {ansible_host: 10.0.0.7}
  children:
    grafana: {hosts: {graf: {}}}
    prometheus: {hosts: {mon1: {}, mon2: {}}}
    alertmanager: {hosts: {mon1: {}}}
%(loki)s
"""
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
                                                             "grafana": "render-prom-$HOME-password"}}},
             False),
}


def _start(out: Path, extra: dict, loki: bool) -> subprocess.Popen:
    out.mkdir(parents=True)
    inventory = out / "inventory" / "render"
    inventory.mkdir(parents=True)
    (inventory / "hosts.yml").write_text(INVENTORY % {
        "python": sys.executable, "loki": "    loki: {hosts: {loki1: {}}}" if loki else ""})
    command = [str(BIN / "ansible-playbook"), "-i", str(inventory / "hosts.yml"), str(RENDER_PLAYBOOK),
               "-e", json.dumps({"render_out": str(out / "files"), **COMMON, **extra})]
    log = (out / "render.log").open("w")
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "HOME": str(out),
                                 "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"})


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
    assert sorted(sources) == ["Alertmanager", "Loki", "Prometheus", "Prometheus mon2"]
    assert sources["Prometheus"]["url"] == "https://10.0.0.9:9090" and sources["Prometheus"]["isDefault"]
    assert sources["Prometheus mon2"]["url"] == "https://10.0.0.10:9091", "a host's own port override"
    assert sources["Alertmanager"]["url"] == "https://10.0.0.9:9093"
    assert sources["Alertmanager"]["type"] == "alertmanager"
    assert sources["Loki"]["url"] == "https://10.0.0.7:3100", "Loki on grafana_loki_port by default"
    for source in sources.values():
        assert source["jsonData"]["tlsAuthWithCACert"] is True and source["secureJsonData"]["tlsCACert"] == CA
    # The stack's Prometheus and Alertmanager require the stack's user; Loki has no basic auth.
    for name in ("Prometheus", "Prometheus mon2", "Alertmanager"):
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
        grafana.grafana_datasources({"loki": ["loki1"]}, hostvars, str(REPO_ROOT / "roles"), "prometheus", CA)
    # A Loki without client authentication asks for nothing.
    plain = grafana.grafana_datasources({"loki": ["loki1"]}, {"loki1": {}}, str(REPO_ROOT / "roles"), "prometheus", CA)
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
