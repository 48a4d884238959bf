"""Stack-wide defaults for every inventory, below the inventory's own group_vars.

inventories/stack_defaults.yml wires the stack-wide settings (TLS, the scrape user) into every role.
It has to be inventory data, not play data: Prometheus reads other hosts' exporter settings through
hostvars, and playbook group_vars are neither visible there nor inside included roles. Nor can it be
a group_vars/all file of each inventory without being copied into every one. This plugin hands it to
the group `all` of whatever inventory is used; listed before host_group_vars in ansible.cfg, so an
inventory's group_vars/all.yml and everything more specific override it.
"""

from __future__ import annotations

from pathlib import Path

from ansible.inventory.group import Group
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
name: monstack_defaults
short_description: Stack-wide defaults (inventories/stack_defaults.yml) for the group all of any inventory
description:
  - Loads inventories/stack_defaults.yml of this repository as variables of the group C(all).
options:
  stage:
    ini:
      - key: stage
        section: vars_monstack_defaults
    env:
      - name: ANSIBLE_VARS_PLUGIN_STAGE
"""

DEFAULTS = Path(__file__).resolve().parents[2] / "inventories" / "stack_defaults.yml"


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        if not any(isinstance(entity, Group) and entity.name == "all" for entity in entities):
            return {}
        # Trusted as templates, like any group_vars file: its values are Jinja.
        return dict(loader.load_from_file(str(DEFAULTS), cache="all", unsafe=True, trusted_as_template=True) or {})
