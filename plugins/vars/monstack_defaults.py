"""Stack-wide defaults for every inventory, below the inventory's own group_vars.

The repository's top-level group_vars/all (stack.yml, ports.yml, scrape.yml) wires the stack-wide settings (TLS,
the scrape user) into every role. It has to be inventory data, not play data: Prometheus reads other
hosts' exporter settings through hostvars, and playbook group_vars are neither visible there nor
above the inventory's own group_vars/all, which must win. Nor can it be a group_vars/all file of each
inventory without being copied into every one. So this plugin hands it to the group `all` of whatever
inventory is used, at the inventory stage; listed before host_group_vars in ansible.cfg, so an
inventory's group_vars/all and everything more specific override it. host_group_vars runs at the
inventory stage only (ansible.cfg), so it does not load the same directory a second time as the
playbook group_vars of site.yml.

Only group_vars/all is read: settings of another group belong to that group in the inventory, and a
file there would not be read at all, so one is refused rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleError
from ansible.inventory.group import Group
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.vars import combine_vars

DOCUMENTATION = """
name: monstack_defaults
short_description: Stack-wide defaults (the repository's group_vars/all) for the group all of any inventory
description:
  - Loads group_vars/all.yml or the files of group_vars/all/ of this repository as variables of the group C(all).
options:
  stage:
    ini:
      - key: stage
        section: vars_monstack_defaults
    env:
      - name: ANSIBLE_VARS_PLUGIN_STAGE
"""

GROUP_VARS = Path(__file__).resolve().parents[2] / "group_vars"
_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def stray_entries(group_vars: Path = GROUP_VARS) -> list[str]:
    """Entries of the top-level group_vars/ other than all: nothing would read them."""
    if not group_vars.is_dir():
        return []
    return sorted(entry.name for entry in group_vars.iterdir()
                  if not entry.name.startswith(".") and entry.suffix in _VARS_SUFFIXES
                  and entry.stem != "all")


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        if not any(isinstance(entity, Group) and entity.name == "all" for entity in entities):
            return {}
        stray = stray_entries()
        if stray:
            raise AnsibleError(
                f"{GROUP_VARS}: {', '.join(stray)} would not be read: the repository's group_vars holds only the "
                f"stack-wide defaults of group all; put a group's settings in your inventory's group_vars")
        data: dict = {}
        # Trusted as templates, like any group_vars file: its values are Jinja.
        for found in loader.find_vars_files(str(GROUP_VARS), "all"):
            data = combine_vars(data, loader.load_from_file(found, cache="all", unsafe=True,
                                                            trusted_as_template=True) or {})
        return data
