"""Controller-side file helpers, computed in the worker instead of a module run.

sha256_file: the digest of a controller file (a release archive), or '' when there is none.

state_files: file entries for plugins/modules/monstack_state.py from a mapping of names to contents.

`{'a': 'text'} | state_files('/etc/x/{}.yml', owner='root', mode='0640')` gives
`[{'dest': '/etc/x/a.yml', 'content': 'text', 'owner': 'root', 'mode': '0640'}]`, sorted by name, so
a role writing one file per key says where and how once. With as_yaml=true the values are data,
written as to_nice_yaml(indent=2) writes them.

client_secrets_to_files: Prometheus HTTP client settings with their secrets moved into files of their
own, so the configuration that names them holds none.
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


# Secrets of Prometheus's HTTP client settings, and the setting that names a file holding each instead.
_CLIENT_SECRETS = {("basic_auth", "password"): "password_file", ("authorization", "credentials"): "credentials_file",
                   ("oauth2", "client_secret"): "client_secret_file", (None, "bearer_token"): "bearer_token_file"}


def client_secrets_to_files(entries, secrets_dir, prefix):
    """Prometheus HTTP client settings (remote_write or scrape_configs entries) with each secret moved
    into a file of its own: {"entries": the entries naming the files (password_file and the like),
    "files": {file name: secret}}. The configuration then holds no secret, so a diff may show it."""
    if not isinstance(entries, list):
        raise AnsibleFilterError(f"{prefix}: must be a list of entries in Prometheus's own form")
    moved, files = [], {}
    for index, entry in enumerate(entries):
        entry = dict(entry) if isinstance(entry, dict) else entry
        for (block, key), file_key in _CLIENT_SECRETS.items():
            holder = entry if block is None else entry.get(block) if isinstance(entry, dict) else None
            if not isinstance(holder, dict) or not holder.get(key):
                continue
            name = f"{prefix}-{index}-{key.replace('_', '-')}"
            holder = dict(holder)
            files[name] = str(holder.pop(key))
            holder[file_key] = f"{secrets_dir}/{name}"
            if block is None:
                entry = holder
            else:
                entry[block] = holder
        moved.append(entry)
    return {"entries": moved, "files": files}


class FilterModule:
    def filters(self):
        return {"sha256_file": sha256_file, "state_files": state_files,
                "client_secrets_to_files": client_secrets_to_files}
