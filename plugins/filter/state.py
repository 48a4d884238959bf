"""File entries for plugins/modules/monstack_state.py from a mapping of names to contents.

`{'a': 'text'} | state_files('/etc/x/{}.yml', owner='root', mode='0640')` gives
`[{'dest': '/etc/x/a.yml', 'content': 'text', 'owner': 'root', 'mode': '0640'}]`, sorted by name, so
a role writing one file per key says where and how once. With as_yaml=true the values are data,
written as to_nice_yaml(indent=2) writes them.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_yaml


def state_files(contents, dest_format, as_yaml=False, **attributes):
    if not isinstance(contents, dict) or "{}" not in str(dest_format):
        raise AnsibleFilterError("state_files needs a mapping of names to contents and a dest with {} for the name")
    return [dict(attributes, dest=str(dest_format).format(name),
                 content=to_nice_yaml(contents[name], indent=2) if as_yaml else contents[name])
            for name in sorted(contents)]


class FilterModule:
    def filters(self):
        return {"state_files": state_files}
