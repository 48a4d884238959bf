"""playbooks/plan.yml (`make plan ENV=<env>`): what site.yml would run where, read from the inventory alone.

The plan runs on the three inventories as they are, with every way to a host made a trap: `ssh` and
`docker` on the PATH, and the Python a module would run with, are scripts that write down that they were
called and fail. The plan must pass without calling any (a quick ping shows the traps do catch a
connection), print every host with the roles, units, ports and sources site.yml and the firewall role
give it, where its backups go and which certificate it gets, write no file, and fail on a bad value with
one line naming that value's variable and no other.

The runs start together, once per module (the fixture `runs`), and every test reads their output.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from conftest import REPO_ROOT, STACK_PORTS, STACK_SETTINGS, load_module

plan = load_module("plugins/filter/plan.py", "monstack_plan")

BIN = Path(sys.executable).parent
ENVIRONMENTS = ["lab", "staging", "production"]
PASSWORD_FILE = REPO_ROOT / "inventories" / "vault-password.example"
# Bad values, each given alone, run on the lab's monitoring host (--limit: the other hosts are still
# read, as a limited run reads them): -> (the variable the refusal must name, the role that refuses it).
BAD_VALUES = {
    "prometheus_retention_time=5x": ("prometheus_retention_time", "prometheus"),
    "alertmanager_data_retention=5d": ("alertmanager_data_retention", "alertmanager"),
}
# The units of the roles without a daemon (a daemon role's is its _<role>_daemon.name, read below).
OTHER_UNITS = {"pki": ["monstack-cert-expiry.timer", "monstack-cert-expiry.path"],
               "firewall": ["monstack-firewall.service"]}
CONNECTS_FROM = ", and the address Ansible connects from (at the run)"


# ---- running it ----------------------------------------------------------------------------------------

def _trap(directory: Path, name: str, log: Path, code: int) -> None:
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit {code}\n')
    path.chmod(0o755)


def _vault(env: str) -> list:
    """--vault-password-file for an inventory with a vault, when the test password file is there."""
    has_vault = any((REPO_ROOT / "inventories" / env / "group_vars").rglob("vault.yml"))
    return ["--vault-password-file", str(PASSWORD_FILE)] if has_vault and PASSWORD_FILE.exists() else []


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every run of the module, started together: name -> (return code, output). "connections" is what
    the traps wrote down during the plans, "ping_connections" during the pings."""
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("runs")
    logs = {"plan": work / "plan-connections", "ping": work / "ping-connections"}
    for kind, log in logs.items():
        (work / kind).mkdir()
        for name in ("ssh", "docker", "python"):
            # 255: what ssh answers when it cannot connect.
            _trap(work / kind, name, log, 255 if name == "ssh" else 1)
    started = {}

    def start(name: str, kind: str, *command: str) -> None:
        # The traps first on the PATH: the ssh and docker the inventories' connections run. A module
        # would run with the trapped Python, on a host or on the controller alike. The output goes to a
        # file: a pipe that nobody reads while the runs go on would fill up and stall its run.
        with (work / f"{name}.out").open("w") as output:
            started[name] = subprocess.Popen(
                [str(BIN / command[0]), *command[1:], "-e", f"ansible_python_interpreter={work / kind / 'python'}"],
                cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
                env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "HOME": str(home),
                     "PATH": f"{work / kind}:{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"})

    # The lab sets no secret: the run would generate them into its PKI directory, here one of the test's.
    lab_pki = ["-e", f"monitoring_pki_dir={work / 'pki'}"]
    for env in ENVIRONMENTS:
        start(env, "plan", "ansible-playbook", "-i", f"inventories/{env}", *_vault(env), "playbooks/plan.yml",
              *(lab_pki if env == "lab" else []))
    # The lab grown to a Prometheus pair and VictoriaMetrics: one inventory file of group membership more.
    start("lab_pair", "plan", "ansible-playbook", "-i", "inventories/lab", "-i", "inventories/lab-pair.yml",
          "playbooks/plan.yml", *lab_pki)
    for bad in BAD_VALUES:
        start(bad, "plan", "ansible-playbook", "-i", "inventories/lab", "playbooks/plan.yml", *lab_pki,
              "--limit", "lab-monitor", "-e", bad)
    # One host of the lab (docker) and one of staging (ssh). Not in one run: inventories given together
    # share group all, and the lab's connection would be staging's too.
    for env, host in (("lab", "lab-web"), ("staging", "web-1.staging.example.net")):
        start(f"ping_{env}", "ping", "ansible", host, "-i", f"inventories/{env}", *_vault(env),
              "-m", "ansible.builtin.ping")
    done = {name: (process.wait(timeout=600), (work / f"{name}.out").read_text())
            for name, process in started.items()}
    for kind, key in (("plan", "connections"), ("ping", "ping_connections")):
        done[key] = logs[kind].read_text() if logs[kind].exists() else ""
    done["lab_pki_dir"] = work / "pki"
    return done


# ---- reading what it printed ---------------------------------------------------------------------------

def _message(output: str, task: str) -> str:
    """The msg block the default callback printed for `task` (the plan's report, or its refusal)."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"TASK [{task}]"))
    first = next(index for index in range(start, len(lines)) if lines[index].strip() == "msg: |-")
    block = []
    for line in lines[first + 1:]:
        if line and not line.startswith(" " * 8):
            break
        block.append(line[8:])
    return "\n".join(block).strip("\n")


def _report(output: str) -> dict:
    """host -> {field: text, "ports": {(port/proto, service): [sources]}} from the plan's report (a field
    wrapped over several lines is joined again with single spaces, as it was before wrapping)."""
    hosts = {}
    # A heading, a section per host, and what was left to the run.
    for section in _message(output, "What site.yml would run where").split("\n\n")[1:-1]:
        lines = section.splitlines()
        fields: dict = {"ports": {}}
        label, row = None, None
        for line in lines[1:]:
            head, text = line[:15].strip(), line[15:]
            if head == "ports" and text.startswith("port "):
                label = "ports"
            elif head:
                label, fields[head] = head, text
            elif label == "ports" and text[:1].isdigit():
                # Columns: port/proto, service, sources, at least two spaces apart.
                port, service, sources = re.split(r"\s{2,}", text.strip(), maxsplit=2)
                row = fields["ports"].setdefault((port, service), [])
                row.append(sources)
            elif label == "ports":
                row.append(text.strip())
            else:
                fields[label] += " " + text.strip()
        if isinstance(fields["ports"], dict):
            fields["ports"] = {key: _split_sources(" ".join(parts)) for key, parts in fields["ports"].items()}
        hosts[lines[0]] = fields
    return hosts


def _split_sources(text: str) -> list:
    """The sources of a port, "<controller>" for the address the run connects from."""
    suffix = CONNECTS_FROM if text.endswith(CONNECTS_FROM) else ""
    return [part for part in text[:len(text) - len(suffix)].split(", ") if part] + (["<controller>"] if suffix else [])


def _refusal(output: str) -> list:
    """The lines of the plan's final refusal, without its heading."""
    return _message(output, "Refuse what the run would refuse, naming each setting").splitlines()[1:]


# ---- what the inventory says ---------------------------------------------------------------------------

def _groups(env: str) -> dict:
    """group -> its hosts (children's included), from hosts.yml, as Ansible's `groups`."""
    groups: dict = {}

    def walk(name: str, node: dict) -> set:
        hosts = set((node or {}).get("hosts") or {})
        for child, sub in ((node or {}).get("children") or {}).items():
            hosts |= walk(child, sub)
        groups[name] = groups.get(name, set()) | hosts
        return groups[name]

    walk("all", yaml.safe_load((REPO_ROOT / "inventories" / env / "hosts.yml").read_text())["all"])
    return {name: sorted(hosts) for name, hosts in groups.items()}


def _site_plays() -> list:
    """(host pattern, role) of every play site.yml imports, in order."""
    plays = []
    for entry in yaml.safe_load((REPO_ROOT / "site.yml").read_text()):
        for play in yaml.safe_load((REPO_ROOT / entry["ansible.builtin.import_playbook"]).read_text()):
            for role in play["roles"]:
                plays.append((str(play["hosts"]), role["role"]))
    return plays


def _hosts_of(pattern: str, groups: dict) -> set:
    pattern = jinja2.Template(pattern).render(groups=groups)
    assert not set(pattern) & set("&!,*"), f"a pattern this test cannot read: {pattern}"
    return set().union(*(groups.get(name, []) for name in pattern.split(":")))


def _admin_networks(env: str) -> set:
    """firewall_admin_sources of group all, as the firewall writes them (networks)."""
    directory = REPO_ROOT / "inventories" / env / "group_vars"
    path = directory / "all" / "main.yml" if (directory / "all").is_dir() else directory / "all.yml"
    values = yaml.safe_load(path.read_text()) or {}
    sources = [jinja2.Template(str(source)).render(**values) for source in values.get("firewall_admin_sources", [])]
    return {str(ipaddress.ip_network(source, strict=False)) for source in sources}


def _role_file(role: str, path: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "roles" / role / path).read_text()) or {}


def _default(role: str, name: str):
    """A setting as the repository leaves it: the stack's (group_vars/all), else the role's default."""
    if name in STACK_SETTINGS:
        return STACK_SETTINGS[name]
    defaults = REPO_ROOT / "roles" / role / "defaults"
    files = [defaults / "main.yml"] if (defaults / "main.yml").is_file() else sorted((defaults / "main").glob("*.yml"))
    return {key: value for path in files for key, value in (yaml.safe_load(path.read_text()) or {}).items()}[name]


def _units(role: str, host: str, groups: dict) -> set:
    """The units a role runs on a host: its daemon's (the log shipper's default kind, alloy), or the
    backup role's timer per component, or those of OTHER_UNITS."""
    if role in OTHER_UNITS:
        return set(OTHER_UNITS[role])
    if role == "backup":
        return {f"monstack-backup@{name}.timer" for name in _backup_components(host, groups)}
    daemon = _role_file(role, "vars/main.yml")[f"_{role}_daemon"]
    if role == "log_shipper":
        daemon = _role_file(role, "vars/main.yml")["_log_shipper_daemons"][_default(role, "log_shipper_kind")]
    return {f"{daemon['name']}.service"}


def _backup_components(host: str, groups: dict) -> list:
    """The components roles/backup's catalogue backs up on a host, as the stack's settings leave them."""
    def wanted(spec: dict) -> bool:
        condition = spec.get("only_when")
        return not condition or str(STACK_SETTINGS[condition["var"]]) == str(condition["equals"])

    catalogue = _role_file("backup", "vars/main.yml")["_backup_catalogue"]
    return sorted(name for name, spec in catalogue.items() if host in groups.get(spec["group"], []) and wanted(spec))


def _stack_ports(host: str, groups: dict, admin: set) -> dict:
    """(port/proto, service) -> who may reach it, for the services of the host's groups, from the firewall
    role's table (roles/firewall/vars/main.yml) and the stack's ports (group_vars/all/ports.yml; no inventory
    changes them)."""
    services = _role_file("firewall", "vars/main.yml")["_firewall_services"]
    ports = {}
    for name, spec in services.items():
        if host not in groups.get(spec["group"], []):
            continue
        sources = set().union(*(groups.get(group, []) for group in spec["from"] if group != "admin"))
        for proto in spec.get("protos", ["tcp"]):
            ports[(f"{STACK_PORTS[spec['port_var']]}/{proto}", name)] = (
                sources | (admin if "admin" in spec["from"] else set()))
    return ports


def _role_variables() -> set:
    """Every variable of every role (defaults and argument_specs)."""
    names = set()
    for role in (REPO_ROOT / "roles").iterdir():
        for path in [role / "defaults" / "main.yml", *sorted((role / "defaults" / "main").glob("*.yml"))]:
            if path.is_file():
                names |= set(yaml.safe_load(path.read_text()) or {})
        specs = role / "meta" / "argument_specs.yml"
        if specs.is_file():
            for entry in (yaml.safe_load(specs.read_text())["argument_specs"] or {}).values():
                names |= set(entry.get("options") or {})
    return names


# ---- the plan of each inventory ------------------------------------------------------------------------

@pytest.fixture(scope="module", params=ENVIRONMENTS)
def env(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def report(runs, env) -> dict:
    code, output = runs[env]
    assert code == 0, output[-6000:]
    return _report(output)


def test_the_plan_contacts_no_host_and_runs_no_module(runs, env):
    code, output = runs[env]
    assert code == 0, output[-6000:]
    recap = [(host, (changed, unreachable, failed)) for host, changed, unreachable, failed in re.findall(
        r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)]
    assert recap and all(counts == ("0", "0", "0") for _, counts in recap), recap
    assert runs["connections"] == "", f"the plans reached for a host: {runs['connections']}"


def test_the_traps_catch_a_connection(runs):
    """Proof that the run above could not have reached a host unnoticed: a ping through the same traps
    fails, and the trap of each inventory's connection (docker for the lab, ssh for the others) says so."""
    for env, host, program in (("lab", "lab-web", "docker"), ("staging", "web-1.staging.example.net", "ssh")):
        code, output = runs[f"ping_{env}"]
        assert code != 0 and re.search(rf"^{re.escape(host)} \| (UNREACHABLE|FAILED)!", output, re.M), output
        assert re.search(rf"^{program} ", runs["ping_connections"], re.M), (runs["ping_connections"], output)


def test_the_plan_says_what_it_left_to_the_run(runs, env):
    """What only the hosts or the artifacts can say: the preflight steps that read them are skipped."""
    left = _message(runs[env][1], "What site.yml would run where").split("\n\n")[-1].replace("\n", " ")
    assert left.startswith("Left to the run")
    for what in ("the address Ansible connects from", "redis_exporter_redis_password_file",
                 "the .deb files of Grafana, Loki and the log shipper", "judged for Debian 12"):
        assert what in left, left


def test_the_plan_writes_no_file(runs):
    """The secrets the run would generate into the inventory's PKI directory (the lab sets none: the scrape
    password, the backup passphrase) are left to the run, and so is the CA."""
    pki = runs["lab_pki_dir"]
    assert not pki.exists(), sorted(str(path) for path in pki.rglob("*"))


def test_every_host_of_the_inventory_is_planned_with_the_roles_of_its_groups(report, env):
    groups = _groups(env)
    assert set(report) == set(groups["all"])
    for host, fields in report.items():
        roles = [role for pattern, role in _site_plays() if host in _hosts_of(pattern, groups)]
        assert fields["roles"] == ", ".join(roles), host
        assert fields["groups"].split(", ") == [g for g in sorted(groups) if g != "all" and host in groups[g]] or (
            fields["groups"].startswith("none")), host


def test_each_host_lists_the_units_of_its_roles(report, env):
    groups = _groups(env)
    for host, fields in report.items():
        expected = set().union(*(_units(role, host, groups) for role in fields["roles"].split(", ")))
        assert set(fields["units"].split(", ")) == expected, host


def test_each_port_is_open_to_the_hosts_and_networks_the_firewall_lets_in(report, env):
    groups = _groups(env)
    admin = _admin_networks(env)
    for host, fields in report.items():
        ports = fields["ports"]
        expected = _stack_ports(host, groups, admin)
        assert set(expected) <= set(ports), (host, sorted(ports))
        for key, sources in expected.items():
            assert set(ports[key]) == sources, (host, key)
        ssh = ports[("22/tcp", "ssh")]
        if admin:
            # Over SSH (not the lab's docker connection), also the address the run connects from.
            assert set(ssh) == admin | ({"<controller>"} if env != "lab" else set()), (host, ssh)
        else:
            assert ssh == ["0.0.0.0/0", "::/0"], (host, ssh)


def test_each_backed_up_host_says_where_its_backups_go(report, env):
    groups = _groups(env)
    backed_up = {host for host in groups["all"] if _backup_components(host, groups)}
    for host, fields in report.items():
        components = _backup_components(host, groups)
        if not components:
            assert "backups" not in fields, host
            continue
        assert all(f"{component} (/" in fields["backups"] for component in components), fields["backups"]
        assert " into /var/backups/monstack/repository, " in fields["backups"], fields["backups"]
        copied = re.search(r"copied to (\S+), append-only: monstack-backup@\S+ port 22, "
                           rf"/srv/monstack-backups/repos/{re.escape(host)}$", fields["backups"])
        if env == "lab":
            assert fields["backups"].endswith("no copy on another host"), fields["backups"]
        else:
            # The backup host lets the backed-up hosts in on SSH.
            assert copied and copied.group(1) in report, fields["backups"]
            assert set(report[copied.group(1)]["ports"][("22/tcp", "backup copies")]) == backed_up


def test_each_host_gets_a_certificate_for_its_names_from_the_internal_ca(runs, report, env):
    for host, fields in report.items():
        ca_dir = runs["lab_pki_dir"] if env == "lab" else REPO_ROOT / "inventories" / "pki" / env
        issued = f"CN {host}, from the internal CA in {ca_dir}, for 365 days"
        assert fields["certificate"].startswith(issued), fields["certificate"]
        names = fields["certificate"].split("names: ", 1)[1]
        assert names.startswith(f"DNS:{host}, DNS:localhost, ") and "IP:127.0.0.1, IP:::1" in names, names
        # The run adds the addresses in the host's facts, which the plan has not read.
        assert names.endswith("and the addresses in its facts (at the run)"), names


def test_every_host_ships_its_logs_to_the_loki_of_the_inventory(report, env):
    loki = _groups(env).get("loki", [])
    for host, fields in report.items():
        if loki:
            assert fields["logs to"] == ", ".join(f"https://{name}:3100/loki/api/v1/push" for name in loki), host
        else:
            assert "logs to" not in fields and "log_shipper" not in fields["roles"], host


def test_the_lab_grows_to_a_prometheus_pair_and_victoriametrics_by_group_membership_alone(runs):
    code, output = runs["lab_pair"]
    assert code == 0, output[-3000:]
    report = _report(output)
    for host in ("lab-monitor", "lab-web"):
        assert {"prometheus.service", "alertmanager.service"} <= set(report[host]["units"].split(", ")), host
    assert {"victoriametrics.service", "monstack-backup@victoriametrics.timer"} <= set(
        report["lab-db"]["units"].split(", "))
    # VictoriaMetrics takes remote_write from both Prometheus hosts; each Alertmanager hears the other.
    assert {"lab-monitor", "lab-web"} <= set(report["lab-db"]["ports"][("8428/tcp", "victoriametrics")])
    assert "lab-web" in report["lab-monitor"]["ports"][("9094/tcp", "alertmanager_cluster")]
    assert "lab-monitor" in report["lab-web"]["ports"][("9094/tcp", "alertmanager_cluster")]


# ---- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_a_bad_value_fails_the_plan_naming_its_variable_and_no_other(runs, bad):
    variable, role = BAD_VALUES[bad]
    code, output = runs[bad]
    assert code != 0, output[-4000:]
    lines = _refusal(output)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{variable}: ") and lines[0].endswith(f"  [{role} on lab-monitor]"), lines
    named = set(re.findall(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", " ".join(lines))) & _role_variables()
    assert named == {variable}, lines
    # The plan is still printed, the refusing role marked, and nothing was reached for.
    assert f"REFUSED: {role} (see the end)" in _report(output)["lab-monitor"]["roles"]
    assert runs["connections"] == ""


# ---- the playbook and its filters ----------------------------------------------------------------------

def test_each_play_of_the_plan_runs_its_role_on_the_hosts_of_its_play_in_site_yml():
    plays = yaml.safe_load((REPO_ROOT / "playbooks" / "plan.yml").read_text())
    planned = [(str(play["hosts"]), play["vars"]["plan_role"]) for play in plays if "plan_role" in play.get("vars", {})]
    assert planned == _site_plays()
    # Every play gathers nothing, and runs the same tasks.
    assert all(play["gather_facts"] is False for play in plays)
    assert all(play["tasks"] == plays[1]["tasks"] for play in plays if "plan_role" in play.get("vars", {}))
    # As playbooks/pki.yml: certificates only with TLS.
    pki = yaml.safe_load((REPO_ROOT / "playbooks" / "pki.yml").read_text())[0]["roles"][0]["when"]
    assert plays[1]["vars"]["plan_enabled"] == "{{ " + pki + " }}"


def test_the_units_the_plan_names_for_roles_without_a_daemon_are_the_roles_own():
    text = (REPO_ROOT / "playbooks" / "plan.yml").read_text()
    for role, units in OTHER_UNITS.items():
        tasks = "".join(path.read_text() for path in (REPO_ROOT / "roles" / role / "tasks").glob("*.yml"))
        for unit in units:
            assert unit in text and re.search(rf"""name'?: '?{re.escape(unit)}""", tasks), (role, unit)


def test_the_argument_spec_the_plan_checks_is_the_roles_without_its_defaults():
    spec = plan.plan_argument_spec("firewall", str(REPO_ROOT / "roles"))
    assert spec["firewall_ssh_port"] == {"type": "int", "description": spec["firewall_ssh_port"]["description"]}
    assert not [name for name, option in spec.items() if "default" in option]


def test_a_refusal_names_the_setting_without_ansibles_wrapping():
    wrapped = ("Task failed: Finalization of task args for 'ansible.builtin.set_fact' failed: Error while resolving "
               "value for '__firewall_openings': The filter plugin 'firewall_openings' failed: node_exporter_port: "
               "port 'abc' is not a number from 1 to 65535")
    unnamed = ("Task failed: Finalization of task args for 'ansible.builtin.set_fact' failed: Error while resolving "
               "value for '_prometheus_jobs': The filter plugin 'prometheus_scrape_jobs' failed: invalid literal")
    message = f"Validation of arguments failed:\nargument 'x_port' is of type str\n{wrapped}\n{unnamed}\n"
    assert plan._problem_lines(message) == ["argument 'x_port' is of type str",
                                            "node_exporter_port: port 'abc' is not a number from 1 to 65535",
                                            unnamed]


def test_refusals_are_one_line_per_setting_with_the_role_and_every_host():
    plans = [{"host": host, "problems": [{"role": "node_exporter", "lines": ["node_exporter_port: wrong"]}]}
             for host in ("a", "b")]
    plans[1]["problems"].append({"role": "backup", "lines": ["backup_dir: wrong", "backup_retention_count: 0"]})
    assert plan.plan_problems(plans) == ["node_exporter_port: wrong  [node_exporter on a, b]",
                                         "backup_dir: wrong  [backup on b]", "backup_retention_count: 0  [backup on b]"]


def test_the_firewalls_addresses_are_shown_as_the_names_of_their_hosts():
    hostvars = {"web": {"ansible_host": "10.0.0.5", "monstack_plan_only": True,
                        "__plan_steps": [{"role": "firewall", "units": ["monstack-firewall.service"],
                                          "firewall": {"enabled": True, "ssh_from_controller": False, "openings": [
                                              {"comment": "node_exporter", "proto": "tcp", "port": 9100,
                                               "sources": ["10.0.0.9", "192.0.2.0/24", plan.plan_fact_address("mon")]},
                                          ]}}]},
                "mon": {"ansible_facts": {"default_ipv4": {"address": plan.plan_fact_address("mon")}}},
                "db": {"monitoring_address": "10.0.0.9"}}
    [web] = plan.plan_hosts(hostvars, ["web", "mon", "db"])
    assert web["address"] == ["10.0.0.5"]
    assert web["ports"] == [{"port": 9100, "proto": "tcp", "service": "node_exporter",
                             "from": ["db", "192.0.2.0/24", "mon"]}]
