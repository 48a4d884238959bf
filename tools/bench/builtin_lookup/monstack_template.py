"""Bench only (tools/bench.py, SPEED_UPS): monstack_template as ansible.builtin.template's own lookup.

`make bench` puts this directory in place of plugins/lookup for some no-op reruns, so that the figure
without plugins/lookup/monstack_template.py's speed-up is measured on the same hosts and roles. Each
term is rendered by the builtin lookup, with its deep copy of the variables; a file entry comes back
with its `template` rendered as `content`, as the project's lookup does.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.plugins.loader import lookup_loader
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: monstack_template
short_description: Bench only - the project's template lookup answered by ansible.builtin.template's
description:
  - Renders each template file, or the C(template) of each file entry into its C(content), with
    ansible.builtin.template's lookup.
options:
  _terms:
    description: Template files, or file entries naming one as C(template).
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        builtin = lookup_loader.get("ansible.builtin.template", loader=self._loader, templar=self._templar)
        results = []
        for term in terms:
            if isinstance(term, Mapping):
                entry = dict(term)
                if "template" in entry:
                    entry["content"] = builtin.run([entry.pop("template")], variables, **kwargs)[0]
                results.append(entry)
            else:
                results.extend(builtin.run([term], variables, **kwargs))
        return results
