"""Controller-side file helpers, computed in the worker instead of a module run.

sha256_file: the digest of a controller file (a release archive), or '' when there is none.

state_files: file entries for plugins/modules/monstack_state.py from a mapping of names to contents.

`{'a': 'text'} | state_files('/etc/x/{}.yml', owner='root', mode='0640')` gives
`[{'dest': '/etc/x/a.yml', 'content': 'text', 'owner': 'root', 'mode': '0640'}]`, sorted by name, so
a role writing one file per key says where and how once. With as_yaml=true the values are data,
written as to_nice_yaml(indent=2) writes them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_yaml


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    try:
        with Path(str(path)).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def state_files(contents, dest_format, as_yaml=False, **attributes):
    if not isinstance(contents, dict) or "{}" not in str(dest_format):
        raise AnsibleFilterError("state_files needs a mapping of names to contents and a dest with {} for the name")
    return [dict(attributes, dest=str(dest_format).format(name),
                 content=to_nice_yaml(contents[name], indent=2) if as_yaml else contents[name])
            for name in sorted(contents)]


class FilterModule:
    def filters(self):
        return {"sha256_file": sha256_file, "state_files": state_files}
