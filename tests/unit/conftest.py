"""Shared helpers for the unit tests: the repository root and loading project code by path.

The filter plugins and tools are not an installed package, so tests load them from their files,
exactly the files Ansible and `make` use.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
# The tools of the virtual environment running the tests (ansible-playbook, promtool, amtool).
BIN = Path(sys.executable).parent
# The filters' shared code (plugins/plugin_utils/monstack), importable as the filters import it.
if str(REPO_ROOT / "plugins" / "plugin_utils") not in sys.path:
    sys.path.append(str(REPO_ROOT / "plugins" / "plugin_utils"))


def load_module(relative_path: str, name: str):
    """Import the Python file at REPO_ROOT/relative_path under module name `name`."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_inventory(directory: Path, groups: dict[str, list[str]], local: str, others: dict | None = None) -> Path:
    """An inventory `hosts.yml` in `directory`: host `local`, where the test renders, through the local
    connection and this Python; the `others` (name -> host variables), which only their variables
    describe; and each group's hosts."""
    inventory = {"all": {"hosts": {local: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                                   **(others or {})},
                         "children": {group: {"hosts": dict.fromkeys(members, {})} for group, members in groups.items()}}}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hosts.yml"
    path.write_text(json.dumps(inventory))  # JSON is YAML
    return path


def playbook_command(playbook: Path, extra_vars: dict, inventory: Path | None = None) -> list[str]:
    """ansible-playbook of this environment on `playbook`, with `extra_vars` as one JSON -e."""
    return [str(BIN / "ansible-playbook"), *(["-i", str(inventory)] if inventory else []), str(playbook),
            "-e", json.dumps(extra_vars)]


def playbook_env(home: Path) -> dict:
    """The environment of a test's ansible-playbook: the repository's ansible.cfg and a home of its own,
    nothing else of the caller's."""
    return {"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "HOME": str(home),
            "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"}


def run_playbook(playbook: Path, extra_vars: dict, home: Path, inventory: Path | None = None) -> None:
    """Run ansible-playbook from the repository root (bounded), failing the test with its output's tail."""
    done = subprocess.run(playbook_command(playbook, extra_vars, inventory), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, check=False, env=playbook_env(home))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
# The stack's plain settings (group_vars/all: every file but stack.yml, whose values are templates of
# the TLS wiring): inventory data of the group all, in every host's hostvars.
STACK_PORTS = yaml.safe_load((REPO_ROOT / "group_vars" / "all" / "ports.yml").read_text())
STACK_SETTINGS = {name: value for path in sorted((REPO_ROOT / "group_vars" / "all").glob("*.yml"))
                  if path.name != "stack.yml" for name, value in yaml.safe_load(path.read_text()).items()}


class InventoryHostvars(dict):
    """hostvars as Ansible gives them to a filter: each host's own variables over the stack's settings."""

    def __getitem__(self, host):
        return {**STACK_SETTINGS, **super().__getitem__(host)}


def inventory_hostvars(hostvars) -> InventoryHostvars:
    return hostvars if isinstance(hostvars, InventoryHostvars) else InventoryHostvars(hostvars or {})


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def daemon_web():
    return load_module("plugins/filter/daemon_web.py", "monstack_daemon_web")


@pytest.fixture
def testbench():
    # Function-scoped: tests monkeypatch module attributes, and a fresh module keeps them apart.
    return load_module("tools/testbench.py", "monstack_testbench")
