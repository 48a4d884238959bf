"""The controller-side speed-ups change what a run costs, never what it renders or decides.

plugins/lookup/monstack_template.py renders as ansible.builtin.template's lookup does, without its deep
copy; plugins/vars/monstack_preload.py loads plugins and gives no variables; the scrape-target filters
look each host's variables up once.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections import Counter

import pytest
from ansible.inventory.group import Group

from conftest import REPO_ROOT, load_module
from monstack import inventory

preload = load_module("plugins/vars/monstack_preload.py", "monstack_preload_vars")

# Backslashes inside an expression, a variable, Ansible's template variables and an include: what
# the roles' templates use.
TEMPLATE = (
    "{{ ansible_managed | comment }}\n"
    "{{ 'a.b' | regex_replace('\\\\.', '-') }} {{ greeting }} {{ template_path | basename }}\n"
    "{% include 'part.j2' %}\n"
)

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    greeting: hello
  tasks:
    - ansible.builtin.debug:
        msg: "{{ {'ours': lookup('monstack_template', 'page.j2'),
                  'builtin': lookup('ansible.builtin.template', 'page.j2'),
                  'entries': query('monstack_template', {'dest': '/a', 'template': 'page.j2', 'mode': '0644'},
                                   {'dest': '/b', 'content': 'as given'}),
                  'leaked': template_path is defined} | to_json | b64encode }}"
"""


def render_with_both_lookups(tmp_path, **env):
    """One play rendering the same template with both lookups, and as a file entry."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.j2").write_text(TEMPLATE)
    (tmp_path / "templates" / "part.j2").write_text("included {{ greeting }}\n")
    (tmp_path / "play.yml").write_text(PLAY)
    run = subprocess.run([sys.executable, "-m", "ansible", "playbook", str(tmp_path / "play.yml")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin",
                              "ANSIBLE_INVENTORY": "localhost,", **env})
    assert run.returncode == 0, run.stdout + run.stderr
    encoded = re.search(r"msg: (\S+)", run.stdout)
    assert encoded, run.stdout
    return json.loads(base64.b64decode(encoded.group(1)))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render_with_both_lookups(tmp_path_factory.mktemp("render"))


def test_monstack_template_renders_what_the_builtin_lookup_renders(rendered):
    result = rendered
    assert result["ours"] == result["builtin"]
    assert "a-b hello page.j2" in result["ours"] and "included hello" in result["ours"]
    assert "Ansible managed" in result["ours"]
    assert result["leaked"] is False, "the template's own variables reached the task's"


def test_a_file_entry_gets_its_template_rendered_as_content_and_keeps_its_other_keys(rendered):
    result = rendered
    assert result["entries"] == [{"dest": "/a", "mode": "0644", "content": result["builtin"]},
                                 {"dest": "/b", "content": "as given"}]


def test_the_benchs_builtin_stand_in_for_monstack_template_renders_the_same(rendered, tmp_path):
    # make bench times reruns with tools/bench/builtin_lookup in place of plugins/lookup (its SPEED_UPS).
    builtin = render_with_both_lookups(tmp_path, ANSIBLE_LOOKUP_PLUGINS=str(REPO_ROOT / "tools" / "bench" / "builtin_lookup"))
    assert (builtin["ours"], builtin["entries"]) == (rendered["ours"], rendered["entries"])


def test_preload_gives_no_variables():
    group = Group("all")
    group.set_variable("ansible_connection", "{{ my_connection }}")
    assert preload.VarsModule().get_vars(None, "/nonexistent", [group, Group("web")]) == {}


FILTER_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - {ansible.builtin.debug: {msg: "{{ '0.0.0.0:9100' | split_listen_address }}"}}
    - {ansible.builtin.debug: {msg: "{{ '0.0.0.0:9100' | split_listen_address }}"}}
    - {ansible.builtin.debug: {msg: "{{ '0.0.0.0:9100' | split_listen_address }}"}}
"""


def filter_loads(tmp_path, **env) -> int:
    """How many times a run of three tasks using a project filter loads that filter's file."""
    (tmp_path / "play.yml").write_text(FILTER_PLAY)
    run = subprocess.run([sys.executable, "-m", "ansible", "playbook", str(tmp_path / "play.yml")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin",
                              "ANSIBLE_INVENTORY": "localhost,", "ANSIBLE_DEBUG": "1", **env})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return len(re.findall(r"Loading FilterModule 'daemon_web' from", run.stdout + run.stderr))


def test_the_project_filters_load_once_per_run_not_once_per_task(tmp_path):
    # Loaded by the main process, which the three tasks' workers inherit.
    assert filter_loads(tmp_path) == 1
    # Without the preload each task's worker loads it again: what the preload is for.
    assert filter_loads(tmp_path, ANSIBLE_VARS_ENABLED="monstack_defaults, host_group_vars") == 3


class CountingHostvars(dict):
    def __init__(self, *args):
        super().__init__(*args)
        self.lookups = Counter()

    def __getitem__(self, host):
        self.lookups[host] += 1
        return super().__getitem__(host)


def test_scrape_filters_look_up_each_hosts_variables_once():
    hostvars = CountingHostvars({"web1": {"monitoring_address": "10.0.0.5", "node_exporter_port": 9200},
                                 "web2": {}})
    assert inventory.scrape_address(hostvars, "web1") == "10.0.0.5"
    assert inventory.scrape_address(hostvars, "web2") == "web2"
    assert inventory.host_value(hostvars, "web1", "node_exporter_port", 9100) == 9200
    assert hostvars.lookups == {"web1": 1, "web2": 1}
    # Another task's hostvars are read anew.
    other = CountingHostvars({"web1": {"monitoring_address": "10.0.0.6"}})
    assert inventory.scrape_address(other, "web1") == "10.0.0.6"
