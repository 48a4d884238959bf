"""roles/loki and roles/log_shipper render what upstream documents: every key of loki.yml exists in
Loki's configuration reference, every key of Promtail's file in Promtail's, and every component,
argument and block of the Alloy file in Alloy's component reference (tests/reference/logs/, copied
verbatim from upstream: Loki v3.7.6, Promtail of Loki v3.6.11, Alloy v1.18.1).

The molecule scenario runs stand-ins, not Loki, Alloy or Promtail (README, "What is verified, and
how"): these tests are where the keys are checked. The source descriptions themselves (bad input,
the journal, service and application logs) are tested through the filter plugin.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import REPO_ROOT, inventory_hostvars, load_module, run_playbook, write_inventory

REFERENCE = REPO_ROOT / "tests" / "reference" / "logs"
RENDER_PLAYBOOK = REPO_ROOT / "tests" / "logs" / "render.yml"
logs = load_module("plugins/filter/logs.py", "monstack_logs_filter")

# Loki, the log shipper and the services whose logs it ships on one host; two Alertmanagers for Loki's ruler.
GROUPS = {"loki": ["app"], "nginx": ["app"], "postgres": ["app"], "redis": ["app"], "alertmanager": ["am1", "am2"]}
OTHERS = {"am1": {"ansible_host": "10.0.0.9"}, "am2": {"ansible_host": "10.0.0.10", "alertmanager_port": 9095}}
TLS = {"tls_server_config": {"cert_file": "/etc/monstack/tls/host.crt", "key_file": "/etc/monstack/tls/host.key"}}
# As group_vars/all/stack.yml wires it: Loki accepts only clients with a certificate of the stack's CA.
LOKI_TLS = {"tls_server_config": dict(TLS["tls_server_config"], client_ca_file="/etc/monstack/tls/ca.crt",
                                      client_auth_type="RequireAndVerifyClientCert")}
EXTRA = {
    "loki_web_config": LOKI_TLS, "alertmanager_web_config": TLS, "loki_ready_ca_path": "/etc/monstack/tls/ca.crt",
    "loki_ruler_alertmanager_ca_file": "/etc/monstack/tls/ca.crt", "log_shipper_loki_ca_file": "/etc/monstack/tls/ca.crt",
    "log_shipper_loki_client_cert_file": "/etc/monstack/tls/host.crt",
    "log_shipper_loki_client_key_file": "/etc/monstack/tls/host.key",
    "log_shipper_app_logs": [{"path": "/var/log/chat/*.json", "labels": {"service": "chat-app", "team": "chat"}}],
    "loki_rule_groups_extra": [{"name": "extra", "rules": [{"alert": "X", "expr": "vector(1)"}]}],
    "monitoring_environment": "render",
}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("logs")
    run_playbook(RENDER_PLAYBOOK, {"logs_out": str(out / "files"), **EXTRA}, home=out,
                 inventory=write_inventory(out / "inventory" / "render", GROUPS, local="app", others=OTHERS))
    return out / "files"


# --- Loki's and Promtail's configuration references: "### <block>" sections of YAML-ish schema ------

_OPEN = object()  # a map with free keys (labels, per-tenant maps)
_KEY = re.compile(r"^(\s*)(?:-\s+)?\[?\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)$")
_INCLUDE = re.compile(r"^\s*(?:-\s+)?\[\s*<([a-z_]+)>\s*\]\s*$")
_FREE = re.compile(r"^\s*\[?\s*<(labelname|string|name)>\s*:|^\s*\[\s*<labelname>")


def _sections(text: str, heading: str) -> dict[str, str]:
    """First YAML code block of every section, by the section's name (backticks stripped)."""
    sections = {}
    for match in re.finditer(rf"^{heading}\s+`?([A-Za-z_.]+)`?[^\n]*\n(.*?)(?=^#{{2,3}} |\Z)", text, re.S | re.M):
        block = re.search(r"```yaml\n(.*?)^```[ \t]*$", match.group(2), re.S | re.M)
        if block and match.group(1) not in sections:
            sections[match.group(1)] = block.group(1)
    return sections


class Schema:
    def __init__(self, text: str, heading: str, root: str) -> None:
        self.raw = _sections(text, heading)
        self.root = root
        self.cache: dict[str, dict] = {}

    def resolve(self, ref: str):
        """The block a <type> names, or None for a scalar."""
        ref = ref.strip().strip("[]").strip()
        ref = re.sub(r"^(list of|map of string to)\s+", "", ref).rstrip(".").rstrip("s") if ref else ref
        for name in (ref, ref + "s", re.sub(r"_config$", "", ref), re.sub(r"_config$", "s", ref),
                     re.sub(r"_config$", "", ref) + "s"):
            if name in self.raw:
                return self.block(name)
        return None

    def block(self, name: str) -> dict:
        if name not in self.cache:
            self.cache[name] = {}
            self.cache[name].update(self.parse(self.raw[name]))
        return self.cache[name]

    def parse(self, text: str) -> dict:
        lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        tree: dict = {}
        stack: list[tuple[int, dict]] = [(-1, tree)]
        for line in lines:
            indent = len(line) - len(line.lstrip(" -"))
            while stack[-1][0] >= indent:
                stack.pop()
            node = stack[-1][1]
            include = _INCLUDE.match(line)
            if include:
                target = self.resolve(include.group(1))
                if target is None:
                    node["*"] = _OPEN
                else:
                    node.update(target)
                continue
            if _FREE.match(line):
                node["*"] = _OPEN
                continue
            key = _KEY.match(line)
            if not key:
                continue
            name, rest = key.group(2), key.group(3).strip()
            ref = re.search(r"<([^>|]+)>", rest)
            if rest == "" or rest.startswith("|"):
                child: dict = {}
                node[name] = child
                stack.append((indent, child))
            elif ref and ("map of" in ref.group(1) and "string to string" in ref.group(1)):
                node[name] = {"*": _OPEN}
            elif ref:
                node[name] = self.resolve(ref.group(1)) or "scalar"
            else:
                node[name] = "scalar"
        return tree

    def unknown(self, data, node=None, where: str = "") -> list[str]:
        node = self.block(self.root) if node is None else node
        missing = []
        if isinstance(data, list):
            for index, item in enumerate(data):
                missing += self.unknown(item, node, f"{where}[{index}]")
            return missing
        if not isinstance(data, dict) or not isinstance(node, dict) or node.get("*") is _OPEN:
            return missing
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            if key not in node:
                missing.append(here)
            elif isinstance(node[key], dict):
                missing += self.unknown(value, node[key], here)
        return missing


LOKI = Schema((REFERENCE / "loki" / "configuration.md").read_text(), "###", "Supported")


def _loki_schema() -> Schema:
    schema = LOKI
    text = (REFERENCE / "loki" / "configuration.md").read_text()
    top = re.search(r"### Supported contents and default values of `loki.yaml`.*?```yaml\n(.*?)```", text, re.S)
    schema.raw["Supported"] = top.group(1)
    return schema


def _promtail_schema() -> Schema:
    text = (REFERENCE / "promtail" / "configuration.md").read_text()
    schema = Schema(text, "#{2,3}", "Supported")
    top = re.search(r"### Supported contents and default values of `config.yaml`:.*?```yaml\n(.*?)```", text, re.S)
    schema.raw["Supported"] = top.group(1)
    # Pipeline stages are documented one per page (stages/<name>.md); the two the role uses.
    stages = {}
    for stage in ("json", "labels"):
        stage_text = (REFERENCE / "promtail" / "stages" / f"{stage}.md").read_text()
        stages[stage] = schema.parse(re.search(r"```yaml\n(.*?)```", stage_text, re.S).group(1))[stage]
    schema.cache["pipeline_stages"] = stages
    return schema


def test_the_reference_parser_knows_upstreams_blocks():
    """The parser is no rubber stamp: it finds known keys and refuses invented ones."""
    loki = _loki_schema()
    assert loki.unknown({"server": {"http_listen_port": 1, "http_tls_config": {"cert_file": "x", "client_ca_file": "c"}},
                         "compactor": {"retention_enabled": True}}) == []
    assert loki.unknown({"server": {"http_port": 1}, "compactor": {"retention": True}, "nonsense": 1}) == [
        "server.http_port", "compactor.retention", "nonsense"]
    promtail = _promtail_schema()
    assert promtail.unknown({"clients": [{"url": "u", "tls_config": {"ca_file": "c", "cert_file": "c",
                                                                     "key_file": "k"}}]}) == []
    assert promtail.unknown({"clients": [{"uri": "u"}], "server": {"port": 1}}) == ["clients[0].uri", "server.port"]


def test_every_loki_key_exists_in_upstreams_configuration_reference(rendered):
    config = yaml.safe_load((rendered / "loki.yml").read_text())
    assert config["schema_config"]["configs"][0]["schema"] == "v13"
    assert _loki_schema().unknown(config) == []


def test_loki_keeps_logs_168h_and_the_compactor_enforces_it(rendered):
    config = yaml.safe_load((rendered / "loki.yml").read_text())
    assert config["limits_config"]["retention_period"] == "168h"
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["schema_config"]["configs"][0]["store"] == "tsdb"
    assert config["analytics"]["reporting_enabled"] is False


def test_loki_serves_https_with_grpc_on_loopback_and_explicit_ports(rendered):
    server = yaml.safe_load((rendered / "loki.yml").read_text())["server"]
    assert server["http_listen_port"] == 3100 and server["grpc_listen_port"] == 9096
    assert server["grpc_listen_address"] == "127.0.0.1"
    assert server["http_tls_config"] == {"cert_file": "/etc/monstack/tls/host.crt",
                                         "key_file": "/etc/monstack/tls/host.key",
                                         "client_ca_file": "/etc/monstack/tls/ca.crt",
                                         "client_auth_type": "RequireAndVerifyClientCert"}


def test_the_ruler_sends_to_every_alertmanager_over_tls_with_the_stack_ca(rendered):
    ruler = yaml.safe_load((rendered / "loki.yml").read_text())["ruler"]
    assert ruler["alertmanager_url"] == "https://10.0.0.9:9093,https://10.0.0.10:9095"
    assert ruler["alertmanager_client"] == {"tls_ca_path": "/etc/monstack/tls/ca.crt"}


def test_the_error_burst_rule_is_loki_rule_format_with_severity_and_runbook(rendered):
    groups = yaml.safe_load((rendered / "monstack.rules.yml").read_text())["groups"]
    assert [group["name"] for group in groups] == ["monstack-logs", "extra"]
    rule = groups[0]["rules"][0]
    assert rule["alert"] == "LogErrorBurst" and rule["for"] == "5m"
    assert "count_over_time(" in rule["expr"] and rule["expr"].rstrip().endswith("> 50")
    assert rule["labels"]["severity"] == "warning"
    assert "{{ $labels.service }}" in rule["annotations"]["summary"]
    assert (REPO_ROOT / rule["annotations"]["runbook_url"]).is_file()


def test_every_promtail_key_exists_in_upstreams_configuration_reference(rendered):
    config = yaml.safe_load((rendered / "promtail.yml").read_text())
    schema = _promtail_schema()
    assert schema.unknown({k: v for k, v in config.items() if k != "scrape_configs"}) == []
    for job in config["scrape_configs"]:
        stages = job.pop("pipeline_stages", [])
        assert schema.unknown(job, schema.block("scrape_configs"), job["job_name"]) == []
        for stage in stages:
            (name, body), = stage.items()
            assert schema.unknown(body, schema.cache["pipeline_stages"][name], f"{job['job_name']}.{name}") == []


def test_promtail_pushes_over_tls_and_reads_the_journal_and_files(rendered):
    config = yaml.safe_load((rendered / "promtail.yml").read_text())
    assert config["clients"] == [{"url": "https://app:3100/loki/api/v1/push",
                                  "external_labels": {"host": "app", "environment": "render"},
                                  "tls_config": {"ca_file": "/etc/promtail/loki-ca.crt",
                                                 "cert_file": "/etc/monstack/tls/host.crt",
                                                 "key_file": "/etc/monstack/tls/host.key"}}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"source_labels": ["__journal__systemd_unit"], "target_label": "unit"} in jobs["journal"]["relabel_configs"]
    assert jobs["nginx_access"]["static_configs"][0]["labels"]["__path__"] == "/var/log/nginx/access.log"
    app = jobs["app_0_chat_app"]
    assert app["pipeline_stages"][0] == {"json": {"expressions": {"level": "level"}}}
    assert app["static_configs"][0]["labels"] == {"service": "chat-app", "team": "chat", "__path__": "/var/log/chat/*.json"}


# --- Alloy's component reference: the Arguments and Blocks tables of each component's page ---------

def _table_names(text: str) -> list[str]:
    """First-column names of the first Markdown table in `text`."""
    names = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            cell = line.split("|")[1]
            names += re.findall(r"`([a-z_.]+)`", cell)[-1:]
        elif names and not line.startswith("|"):
            break
    return names


def _alloy_reference(component: str) -> dict:
    text = (REFERENCE / "alloy" / "components" / f"{component}.md").read_text()
    arguments = re.search(r"^## Arguments\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    blocks_section = re.search(r"^## Blocks\n(.*?)(?=^## )", text, re.S | re.M)
    block_args: dict[str, list] = {}
    block_paths: list[str] = []
    if blocks_section:
        for line in blocks_section.group(1).splitlines():
            if line.startswith("| ") and "`" in line.split("|")[1]:
                block_paths.append(" > ".join(re.findall(r"`([a-z_.]+)`", line.split("|")[1])))
        for match in re.finditer(r"^### `([a-z_.]+)`\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M):
            name, body = match.group(1), match.group(2)
            shared = re.search(r'docs/shared lookup="reference/components/([a-z-]+\.md)"', body)
            if "|" not in body and shared:
                body = (REFERENCE / "alloy" / "shared" / "reference" / "components" / shared.group(1)).read_text()
            block_args[name] = _table_names(body)
    return {"arguments": _table_names(arguments), "blocks": block_paths, "block_arguments": block_args}


def _alloy_problems(components: list) -> list[str]:
    problems = []
    for component in components:
        name = component["component"]
        reference = _alloy_reference(name)
        where = f'{name} "{component["label"]}"'
        problems += [f"{where}: argument {arg}" for arg in component["arguments"] if arg not in reference["arguments"]]

        def walk(blocks, path):
            for block in blocks:
                full = path + [block["name"]]
                if " > ".join(full) not in reference["blocks"]:
                    problems.append(f"{where}: block {' > '.join(full)}")
                    continue
                known = reference["block_arguments"].get(block["name"], [])
                problems.extend(f"{where}: {' > '.join(full)} argument {arg}"
                                for arg in block.get("arguments", {}) if arg not in known)
                walk(block.get("blocks", []), full)
        walk(component.get("blocks", []), [])
    return problems


def test_the_alloy_reference_parser_refuses_invented_arguments_and_blocks():
    bad = [{"component": "loki.write", "label": "x", "arguments": {"external_label": {}},
            "blocks": [{"name": "endpoint", "arguments": {"address": "u"},
                        "blocks": [{"name": "tls", "arguments": {}, "blocks": []}]}]}]
    assert _alloy_problems(bad) == ['loki.write "x": argument external_label', 'loki.write "x": endpoint argument address',
                                    'loki.write "x": block endpoint > tls']


def test_every_alloy_component_argument_and_block_exists_in_upstreams_reference(rendered):
    components = json.loads((rendered / "alloy-components.json").read_text())
    kinds = {component["component"] for component in components}
    assert kinds == {"loki.write", "loki.relabel", "loki.source.journal", "local.file_match", "loki.source.file",
                     "loki.process"}
    assert _alloy_problems(components) == []


def test_the_alloy_file_pushes_over_tls_and_parses_json_application_logs(rendered):
    text = (rendered / "config.alloy").read_text()
    assert text.startswith("//"), "Alloy has no # comments"
    assert 'url = "https://app:3100/loki/api/v1/push"' in text
    assert 'ca_file = "/etc/alloy/loki-ca.crt"' in text
    assert 'cert_file = "/etc/monstack/tls/host.crt"' in text and 'key_file = "/etc/monstack/tls/host.key"' in text
    assert 'loki.process "app_0_chat_app"' in text and "stage.json {" in text
    assert 'relabel_rules = loki.relabel.journal.rules' in text
    assert text.count("{") == text.count("}")


def test_alloy_strings_keep_characters_beyond_ascii_as_they_are():
    """Alloy reads a UTF-16 surrogate pair (JSON's escape for an emoji) as an error: the characters go
    in as UTF-8; quotes, backslashes and control characters are escaped as Alloy reads them."""
    text = logs.alloy_syntax(logs.alloy_components(
        [{"name": "app", "type": "file", "format": "plain", "path": "/var/log/app.log",
          "labels": {"service": "caf\u00e9 \U0001F680", "team": 'a "b" \\ c'}}], ["https://l:3100/loki/api/v1/push"]))
    assert '"service" = "caf\u00e9 \U0001F680"' in text
    assert '"team" = "a \\"b\\" \\\\ c"' in text
    assert "\\ud83d" not in text and "\\u00e9" not in text


# --- The one description of log sources -------------------------------------------------------------

def test_sources_follow_the_hosts_groups():
    groups = {"nginx": ["web"], "postgres": ["db"], "redis": ["db"]}
    names = lambda host: [source["name"] for source in logs.log_sources(host, groups)]  # noqa: E731
    assert names("web") == ["journal", "nginx_access", "nginx_error"]
    assert names("db") == ["journal", "postgresql", "redis"]
    assert names("other") == ["journal"]
    assert logs.log_sources("web", groups, journal=False, service_logs=False) == []


@pytest.mark.parametrize(("entry", "message"), [
    ({"labels": {"service": "a"}}, "log_shipper_app_logs[0] has no path"),
    ({"path": "relative.log", "labels": {"service": "a"}}, "log_shipper_app_logs[0] has no path"),
    ({"path": "/var/log/a.log"}, "needs labels.service"),
    ({"path": "/var/log/a.log", "labels": {"service": "a", "bad-name": "x"}}, "not valid Loki label names"),
    ({"path": "/var/log/a.log", "labels": {"service": "a"}, "format": "xml"}, "format must be json or plain"),
])
def test_a_bad_application_log_entry_is_refused_naming_the_variable(entry, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        logs.log_sources("web", {}, app_logs=[entry])


def test_the_shippers_present_a_client_certificate_only_over_https_and_only_with_its_key():
    sources = logs.log_sources("web", {})
    urls = ["https://l1:3100/loki/api/v1/push", "http://l2:3100/loki/api/v1/push"]
    clients = logs.promtail_config(sources, urls, "/ca", client_cert_file="/t/host.crt",
                                   client_key_file="/t/host.key")["clients"]
    assert clients[0]["tls_config"] == {"ca_file": "/ca", "cert_file": "/t/host.crt", "key_file": "/t/host.key"}
    assert "tls_config" not in clients[1]
    halves = logs.promtail_config(sources, urls[:1], "/ca", client_cert_file="/t/host.crt")["clients"]
    assert halves[0]["tls_config"] == {"ca_file": "/ca"}
    write = logs.alloy_components(sources, urls, "", client_cert_file="/t/host.crt", client_key_file="/t/host.key")[0]
    assert [endpoint["blocks"] for endpoint in write["blocks"]] == [
        [{"name": "tls_config", "arguments": {"cert_file": "/t/host.crt", "key_file": "/t/host.key"}, "blocks": []}], []]
    assert _alloy_problems([write]) == []


def test_loki_urls_follow_each_hosts_port_and_tls(tmp_path):
    hostvars = {"l1": {"ansible_host": "10.0.0.1"},
                "l2": {"loki_port": 3200, "loki_web_config": {"tls_server_config": {"cert_file": "c", "key_file": "k"}}}}
    assert logs.loki_push_urls({"loki": ["l1", "l2"]}, inventory_hostvars(hostvars)) == [
        "http://10.0.0.1:3100/loki/api/v1/push", "https://l2:3200/loki/api/v1/push"]
