"""inventories/staging and inventories/production: the examples a user copies first are complete.

Read with the TEST vault password they are published with (inventories/vault-password.example), as
Ansible reads them: every group site.yml runs on has a host, every host has a place, site.yml passes
--syntax-check, every value resolves (vault included) on the controller without connecting to any
host, the secrets are in the encrypted vault and nowhere else, and the application targets of the
guides (an API on :4000/api/metrics, FastAPI services on :8000-8004) are scraped through firewall
openings of their hosts.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, load_module

BIN = Path(sys.executable).parent
ENVIRONMENTS = ["staging", "production"]
PASSWORD_FILE = REPO_ROOT / "inventories" / "vault-password.example"
VALUES_PLAYBOOK = REPO_ROOT / "tests" / "render" / "inventory_values.yml"
# The groups of playbooks/backup.yml: the hosts that back up, and so send copies to backup_remote_host.
BACKUP_GROUPS = yaml.safe_load((REPO_ROOT / "playbooks" / "backup.yml").read_text())[0]["hosts"].split(":")
# What the issue asked the examples to show; also a guard against a parse of site.yml that finds nothing.
GROUPS_THE_EXAMPLES_MUST_HAVE = {"prometheus", "alertmanager", "blackbox", "grafana", "loki",
                                 "nginx", "redis", "mongodb", "postgres"}
# Secrets each example sets, by the group whose hosts read them: each must be exactly a vault reference.
# PagerDuty pages people: production only. grafana_smtp.password is a key of grafana_smtp.
SECRETS = {
    "all": ["monitoring_scrape_password", "monitoring_backup_passphrase"],
    "grafana": ["grafana_admin_password", "grafana_secret_key", "grafana_smtp.password"],
    "alertmanager": ["alertmanager_slack_api_url", "alertmanager_smtp_auth_password", "alertmanager_watchdog_url"],
    "redis": ["redis_exporter_redis_password"],
    "mongodb": ["mongodb_exporter_uri"],
}
PRODUCTION_SECRETS = {"alertmanager": ["alertmanager_pagerduty_routing_key"]}
# The guides' application targets: job -> (port, metrics path).
APPLICATION_JOBS = {
    "api": (4000, "/api/metrics"),
    "api-gateway": (8000, "/metrics"),
    "task-service": (8001, "/metrics"),
    "import-service": (8003, "/metrics"),
    "realtime-worker": (8004, "/metrics"),
}
_VAULT_REFERENCE = re.compile(r"^\{\{\s*(vault_[a-z0-9_]+)\s*\}\}$")

firewall = load_module("plugins/filter/firewall.py", "monstack_firewall_examples")
logs = load_module("plugins/filter/logs.py", "monstack_logs_examples")


def _inventory(env: str) -> Path:
    return REPO_ROOT / "inventories" / env


def _run(tmp_home: Path, *command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """An Ansible command as `make` runs it: the repository's ansible.cfg, the virtualenv's tools, a HOME
    of its own (nothing written to the user's ~/.ansible)."""
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False,
                          env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "HOME": str(tmp_home),
                               "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"})


def _with_vault(env: str) -> list:
    return ["-i", str(_inventory(env)), "--vault-password-file", str(PASSWORD_FILE)]


def _stack_plays() -> list:
    """(host pattern, play name) of every play site.yml imports, in order."""
    plays = []
    for entry in yaml.safe_load((REPO_ROOT / "site.yml").read_text()):
        for play in yaml.safe_load((REPO_ROOT / entry["ansible.builtin.import_playbook"]).read_text()):
            plays.append((str(play["hosts"]), play["name"]))
    return plays


def _stack_groups() -> set:
    """The groups site.yml's plays name (a templated pattern names its groups inside the template)."""
    groups = set()
    for pattern, _ in _stack_plays():
        if "{{" in pattern:
            groups |= set(re.findall(r"'([a-z_]+)'", pattern))
        else:
            groups |= {part.lstrip("&!") for part in re.split(r"[:,]", pattern) if part}
    return groups - {"all", "ungrouped"}


def _plain_files(env: str) -> list:
    """The inventory's own files, without the vault."""
    return sorted(path for path in _inventory(env).rglob("*.yml") if path.name != "vault.yml")


def _hosts_file_names(group: dict) -> set:
    """Variables set in hosts.yml: a group's vars, its hosts' own, and its children's."""
    names = set(group.get("vars") or {})
    for host_vars in (group.get("hosts") or {}).values():
        names |= set(host_vars or {})
    for child in (group.get("children") or {}).values():
        names |= _hosts_file_names(child or {})
    return names


def _plain_names(env: str) -> set:
    """Every variable the inventory's own files set (group_vars files, and hosts.yml)."""
    names = set()
    for path in _plain_files(env):
        data = yaml.safe_load(path.read_text()) or {}
        names |= _hosts_file_names(data["all"]) if path.name == "hosts.yml" else set(data)
    return names


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ansible-home")


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def env(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def inventory(env, home) -> dict:
    """ansible-inventory --list with the vault password: groups, and each host's variables unresolved."""
    done = _run(home, "ansible-inventory", *_with_vault(env), "--list")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def groups(inventory) -> dict:
    """group -> its hosts, children's hosts included, as Ansible's `groups`."""
    def hosts(name: str) -> set:
        group = inventory.get(name, {})
        return set(group.get("hosts", [])).union(*(hosts(child) for child in group.get("children", [])))
    names = [name for name in inventory if name != "_meta"]
    return {name: sorted(hosts(name)) for name in names}


@pytest.fixture(scope="module")
def vault(env, home) -> dict:
    done = _run(home, "ansible-vault", "view", "--vault-password-file", str(PASSWORD_FILE),
                str(_inventory(env) / "group_vars" / "all" / "vault.yml"))
    assert done.returncode == 0, f"the vault does not open with {PASSWORD_FILE.name}: {done.stderr}"
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def resolved(env, home) -> dict:
    """host -> {variable: value} for every variable the inventory's files set, templated on the controller
    by a localhost-only play (tests/render/inventory_values.yml)."""
    pki = REPO_ROOT / "inventories" / "pki" / env
    before = sorted(pki.rglob("*")) if pki.exists() else None
    done = _run(home, "ansible-playbook", *_with_vault(env), str(VALUES_PLAYBOOK),
                "-e", json.dumps({"inventory_value_names": sorted(_plain_names(env))}))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    # Nothing was generated beside the inventory: every secret came from the vault, no lookup made one.
    assert (sorted(pki.rglob("*")) if pki.exists() else None) == before, f"the run wrote into {pki}"
    values = [json.loads(base64.b64decode(found)) for found in re.findall(r"msg: (\S+)", done.stdout)]
    # Only localhost was ever a host of the run: nothing connected anywhere else.
    assert set(re.findall(r"^\w+: \[([^\]]+)\]", done.stdout, re.M)) == {"localhost"}, done.stdout
    return {entry["host"]: entry["values"] for entry in values}


def _value(values: dict, dotted: str):
    name, _, key = dotted.partition(".")
    value = values.get(name)
    return value.get(key) if key and isinstance(value, dict) else value


def test_the_test_password_file_says_it_is_a_test_password():
    text = PASSWORD_FILE.read_text()
    # Ansible reads the whole file as the password (and would run it, were it executable).
    assert len(text.strip().splitlines()) == 1 and "TEST" in text and "replace" in text, text
    assert not PASSWORD_FILE.stat().st_mode & 0o111, f"{PASSWORD_FILE} is executable: Ansible would run it"


def test_the_vault_is_encrypted_and_opens_with_the_test_password(env, vault):
    path = _inventory(env) / "group_vars" / "all" / "vault.yml"
    text = path.read_text()
    assert text.startswith("$ANSIBLE_VAULT;1."), f"{path} is not encrypted with ansible-vault"
    assert "vault_" not in text
    assert vault and all(name.startswith("vault_") for name in vault), sorted(vault)
    assert all(isinstance(value, str) and "TEST" in value for value in vault.values()), (
        "every secret of an example is a test value, marked TEST")


def test_every_group_site_yml_runs_on_has_a_host(groups):
    stack = _stack_groups()
    assert GROUPS_THE_EXAMPLES_MUST_HAVE <= stack, f"site.yml's groups as parsed: {sorted(stack)}"
    # log_shipper is where the shipper runs when the inventory has no Loki; these have one.
    empty = sorted(group for group in stack - {"log_shipper"} if not groups.get(group))
    assert not empty, f"groups of site.yml without a host: {empty}"


def test_every_play_of_site_yml_has_hosts_and_the_syntax_check_passes(env, home):
    done = _run(home, "ansible-playbook", *_with_vault(env), "--syntax-check", "site.yml")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    done = _run(home, "ansible-playbook", *_with_vault(env), "--list-hosts", "site.yml")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    counts = re.findall(r"play #\d+ \((.*?)\): (.*?)\tTAGS.*\n.*pattern:.*\n\s+hosts \((\d+)\)", done.stdout)
    assert len(counts) == len(_stack_plays()), done.stdout
    empty = [f"{name} ({pattern})" for pattern, name, count in counts if int(count) == 0]
    assert not empty, f"plays of site.yml that would run on no host: {empty}"


def test_every_host_is_in_a_group_of_the_stack_or_keeps_the_backups(groups, resolved):
    stack = _stack_groups()
    placed = {host for group in stack for host in groups.get(group, [])}
    backup_hosts = {values.get("backup_remote_host") for values in resolved.values()} - {"", None}
    unplaced = sorted(set(groups["all"]) - placed - backup_hosts)
    assert not unplaced, f"hosts in no group of site.yml and no host's backup_remote_host: {unplaced}"
    # Groups that are not the stack's are the applications' (app_*), whose hosts run a stack service too.
    others = sorted(set(groups) - stack - {"all", "ungrouped", "log_shipper"})
    assert all(group.startswith("app_") for group in others), others


def test_every_value_of_the_inventory_resolves(groups, resolved):
    assert set(resolved) == set(groups["all"])
    left = {}
    for host, values in resolved.items():
        for name, value in values.items():
            text = json.dumps(value)
            if "{{" in text or "{%" in text or "vault_" in text:
                left.setdefault(host, []).append(name)
    assert not left, f"values still holding template text after templating: {left}"


def test_secrets_come_from_the_vault_and_nowhere_else(env, inventory, groups, resolved, vault):
    hostvars = inventory["_meta"]["hostvars"]
    expected = dict(SECRETS)
    if env == "production":
        expected = {group: names + PRODUCTION_SECRETS.get(group, []) for group, names in expected.items()}
    for group, names in expected.items():
        for host in groups[group]:
            for name in names:
                raw = _value(hostvars[host], name)
                found = _VAULT_REFERENCE.match(str(raw))
                assert found, f"{host}: {name} is {raw!r}, not a reference to the vault"
                assert found.group(1) in vault, f"{found.group(1)} is not in {env}'s vault"
                assert _value(resolved[host], name) == vault[found.group(1)], f"{host}: {name}"
    # Every secret in the vault is used by a plain variable, and no secret is in a plain file too.
    referenced = set()
    for path in _plain_files(env):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        referenced |= set(re.findall(r"\bvault_[a-z0-9_]+", text))
        leaked = [name for name, value in vault.items() if value in path.read_text()]
        assert not leaked, f"{path.relative_to(REPO_ROOT)} holds the value of {leaked} in clear"
    assert referenced == set(vault), (
        f"in the vault, used by no plain variable: {sorted(set(vault) - referenced)}; "
        f"used, not in the vault: {sorted(referenced - set(vault))}")
    # Any variable a role marks secret (no_log in its argument_specs) that the inventory sets comes from the vault.
    secret = set()
    for spec in (REPO_ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in (yaml.safe_load(spec.read_text())["argument_specs"] or {}).values():
            secret |= {name for name, option in (entry.get("options") or {}).items() if option.get("no_log")}
    plain = _plain_names(env)
    clear = sorted(f"{host}: {name}" for host, values in hostvars.items() for name in secret & set(values) & plain
                   if not _VAULT_REFERENCE.match(str(values[name])))
    assert not clear, f"secrets set in clear: {clear}"


def test_application_targets_have_the_guides_shapes_and_are_let_in_by_their_hosts(groups, resolved):
    for prometheus in groups["prometheus"]:
        targets = resolved[prometheus]["prometheus_targets"]
        settings = resolved[prometheus].get("prometheus_target_job_settings", {})
        assert set(targets) == set(APPLICATION_JOBS), sorted(targets)
        for job, (port, path) in APPLICATION_JOBS.items():
            assert settings.get(job, {}).get("metrics_path", "/metrics") == path, job
            addresses = [target for entry in targets[job] for target in entry["targets"]]
            assert addresses, f"{prometheus}: job {job} has no target"
            for address in addresses:
                host, _, target_port = address.rpartition(":")
                assert int(target_port) == port, f"{job}: {address}"
                assert host in resolved, f"{job}: {address} is not a host of the inventory"
                openings = resolved[host].get("firewall_rules_extra", [])
                assert any(rule["port"] == port and "prometheus" in rule["sources"] for rule in openings), (
                    f"{host}'s firewall lets Prometheus in on {port} nowhere (firewall_rules_extra): job {job}")
        # The health probes of the application hosts go through the blackbox hosts' openings.
        for probe in resolved[prometheus].get("prometheus_inventory_probes", []):
            port = re.search(r":(\d+)/", probe["target"])
            for host in groups[probe["group"]] if port else []:
                assert any(rule["port"] == int(port.group(1)) and "blackbox" in rule["sources"]
                           for rule in resolved[host].get("firewall_rules_extra", [])), f"{host}: {probe}"


def test_firewall_openings_and_log_sources_of_every_host_are_valid(groups, resolved):
    for host, values in resolved.items():
        assert firewall.firewall_rules_problems(values.get("firewall_rules_extra", []), groups) == [], host
        logs.log_sources(host, groups, app_logs=values.get("log_shipper_app_logs", []))
        networks = values["firewall_admin_sources"]
        assert networks and all(ipaddress.ip_network(network) for network in networks), host


def test_datastores_are_reachable_from_the_inventory_only_and_nginx_from_everywhere(groups, resolved):
    # firewall_known_services_sources holds for every known service of a host: a datastore host that
    # also served the public through nginx would have its nginx narrowed with it.
    for host in {host for group in ("redis", "mongodb", "postgres") for host in groups[group]}:
        assert resolved[host].get("firewall_known_services_sources") == ["all"], host
    everywhere = ["0.0.0.0/0", "::/0"]
    for host in groups["nginx"]:
        assert resolved[host].get("firewall_known_services_sources", everywhere) == everywhere, (
            f"{host} serves the public through nginx, yet its known services are narrowed")


def test_the_hosts_that_back_up_copy_to_another_host_and_the_others_do_not(groups, resolved):
    backing_up = {host for group in BACKUP_GROUPS for host in groups.get(group, [])}
    for host, values in resolved.items():
        remote = values["backup_remote_host"]
        if host in backing_up:
            assert remote in resolved and remote != host, f"{host}: backup_remote_host {remote!r}"
            # A host of its own: a backup that dies with the stack is no backup.
            assert not backing_up & {remote}, f"{host} copies to {remote}, which is backed up itself"
        else:
            # playbooks/backup-prune.yml would look for a repository the host never made.
            assert remote == "", f"{host} backs nothing up, yet has backup_remote_host {remote!r}"
