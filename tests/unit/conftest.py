"""Shared helpers for the unit tests: the repository root and loading project code by path.

The filter plugins and tools are not an installed package, so tests load them from their files,
exactly the files Ansible and `make` use.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
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


# The stack's plain settings (group_vars/all/ports.yml, scrape.yml): inventory data of the group all, in
# every host's hostvars.
STACK_PORTS = yaml.safe_load((REPO_ROOT / "group_vars" / "all" / "ports.yml").read_text())
STACK_SETTINGS = {**STACK_PORTS, **yaml.safe_load((REPO_ROOT / "group_vars" / "all" / "scrape.yml").read_text())}


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
