"""ansible.builtin.template's lookup, without a deep copy of every variable for each file.

The builtin lookup deep-copies all of the task's variables before it renders each file, so that
the variables it adds (template_path, ansible_managed, ...) stay out of the task's. The roles render
some forty files per rerun, and those copies were a tenth of the controller's CPU time
(docs/benchmark.md). Here the added variables sit in a layer of their own over the task's
(collections.ChainMap): they stay apart the same way, and nothing is copied. Search path, include
path and the rendered text are those of the builtin lookup.

A term may also be a file entry of monstack_state (roles/daemon: daemon_files) naming its `template`:
it comes back with that template rendered as its `content`. A role can so hand over the name of a
template, and it is rendered only where the file is written, not again wherever the list is read
(the daemon role's argument validation reads it).

The template variables are those Ansible documents for templates, made here with the standard library
(Ansible's own helper is private): `ansible_managed` is the configured string as it stands, the
constant ansible-core moves to (its strftime and {host}/{uid}/{file} expansion are deprecated).

`make bench` (docs/benchmark.md): the full stack's no-op rerun took 9.36 s with ansible.builtin.template's
lookup in its place and 8.81 s with this one at `362f663` (6% less), 15.50 s and 13.88 s at `fed2178` on
a slower day (10% less).
"""

from __future__ import annotations

import collections
import datetime
import os
import pwd
from collections.abc import Mapping

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template

DOCUMENTATION = """
name: monstack_template
short_description: Render template files from the role's templates/ directory, as ansible.builtin.template's lookup
description:
  - Returns, for each file named, its content rendered with the task's variables and the template
    variables Ansible adds (template_path, template_fullpath, ansible_managed, ...).
  - For each dictionary with a C(template) key, the same dictionary with C(content) the rendered
    template instead; a dictionary without one comes back as it is.
  - Files are found and included as ansible.builtin.template's lookup finds them; it has none of its
    options.
options:
  _terms:
    description: Template files, found in the templates/ directories of the search path, or file
      entries (dictionaries) naming one as C(template).
"""

RETURN = """
_raw:
  description: The rendered files, one string each, or the file entries with their content.
  type: list
  elements: raw
"""


def template_vars(term: str, path: str, with_ansible_managed: bool) -> dict:
    """The variables Ansible documents for a template (template_path, template_fullpath, template_host,
    template_uid, template_mtime, template_run_date, template_destpath), and ansible_managed unless the
    task's variables set it."""
    stat = os.stat(path)
    try:
        uid = pwd.getpwuid(stat.st_uid).pw_name
    except KeyError:
        uid = stat.st_uid
    added = {"template_host": os.uname()[1], "template_path": term, "template_fullpath": path,
             "template_uid": uid, "template_mtime": datetime.datetime.fromtimestamp(stat.st_mtime),
             "template_run_date": datetime.datetime.now(), "template_destpath": None}
    if with_ansible_managed:
        added["ansible_managed"] = str(C.config.get_config_value("DEFAULT_MANAGED_STR"))
    return added


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        self.set_options(var_options=variables, direct=kwargs)
        results = []
        for term in terms:
            if isinstance(term, Mapping):
                entry = dict(term)
                if "template" in entry:
                    entry["content"] = self._render(entry.pop("template"), variables)
                results.append(entry)
            else:
                results.append(self._render(term, variables))
        return results

    def _render(self, term, variables):
        path = self.find_file_in_search_path(variables, "templates", term)
        if not path:
            raise AnsibleError(f"the template file {term} could not be found for the lookup")
        # Includes resolve beside the file, then in each search path's templates/ and the path itself.
        include_path = [os.path.dirname(path)] + [p for base in variables.get("ansible_search_path", [])
                                                  for p in (os.path.join(base, "templates"), base)]
        added = template_vars(term, path, with_ansible_managed="ansible_managed" not in variables)
        templar = self._templar.copy_with_new_env(
            available_variables=collections.ChainMap(added, variables), searchpath=include_path)
        # As the builtin lookup: backslashes in the file's expressions are Jinja's, not YAML's.
        return templar.template(trust_as_template(self._loader.get_text_file_contents(path)),
                                escape_backslashes=False)
