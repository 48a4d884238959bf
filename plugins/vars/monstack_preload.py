"""Load once, in ansible-playbook's main process, the plugins that every task would load again.

Ansible runs each task of each host in a worker process forked from the main one, and a worker
loads what it needs itself: every filter and test file (to find which file defines a name), the
connection plugin (parsing its documentation as YAML for its settings), the become plugin and the
lookups. On a no-op rerun of site.yml that was about a quarter of the controller's CPU time
(docs/benchmark.md). A worker inherits what the main process loaded before the fork, so loading it
here, while the inventory is read, makes it a cost per run instead of per task and host.

This plugin contributes no variables. The connection plugins it loads are the default transport and
those the inventory names literally in `ansible_connection`; one it does not see (set in
group_vars, or templated) is simply loaded by each worker as before.

`make bench` (docs/benchmark.md): the full stack's no-op rerun took 10.98 s without this plugin and
8.81 s with it at `362f663` (20% less), 17.86 s and 13.88 s at `fed2178` on a slower day (22% less).
"""

from __future__ import annotations

from ansible import constants as C
from ansible.plugins.loader import become_loader, connection_loader, filter_loader, lookup_loader, test_loader
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
name: monstack_preload
short_description: Load filters, tests, lookups and connection plugins once, before the workers fork
description:
  - Returns no variables. Loads in the main process the plugins each worker would otherwise load
    for every task, so that the forked workers inherit them.
options:
  stage:
    ini:
      - key: stage
        section: vars_monstack_preload
    env:
      - name: ANSIBLE_VARS_PLUGIN_STAGE
"""

# The lookups the roles call on every run (roles/*/vars, roles/*/tasks).
LOOKUPS = ("monstack_template", "ansible.builtin.file", "ansible.builtin.fileglob", "ansible.builtin.password")


def _load(loader, name):
    # Only a speed-up: a plugin that cannot be loaded here fails where a task uses it, with its own error.
    try:
        loader.get(name, class_only=True)
    except Exception:  # pylint: disable=broad-exception-caught
        pass


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True

    def __init__(self):
        super().__init__()
        self._connections_loaded: set[str] = set()
        self._common_loaded = False

    def _load_common(self):
        # One name of each Jinja plugin kind loads every filter and test file on the plugin path.
        _load(filter_loader, "ansible.builtin.combine")
        _load(test_loader, "ansible.builtin.match")
        for name in LOOKUPS:
            _load(lookup_loader, name)
        _load(become_loader, C.DEFAULT_BECOME_METHOD)
        self._load_connection(C.DEFAULT_TRANSPORT)
        self._common_loaded = True

    def _load_connection(self, name):
        if isinstance(name, str) and name and "{" not in name and name not in self._connections_loaded:
            self._connections_loaded.add(name)
            _load(connection_loader, name)

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        if not self._common_loaded:
            self._load_common()
        for entity in entities if isinstance(entities, list) else [entities]:
            self._load_connection(getattr(entity, "vars", {}).get("ansible_connection"))
        return {}
