"""How hosts are reached, for templates and tasks: the inventory lookups of
plugins/plugin_utils/monstack/inventory.py that roles use directly."""

from __future__ import annotations

import sys
from pathlib import Path

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.inventory import host_addresses, scrape_address, web_config_requires_client_cert  # noqa: E402


class FilterModule:
    def filters(self):
        return {
            "scrape_address": scrape_address,
            "host_addresses": host_addresses,
            "web_config_requires_client_cert": web_config_requires_client_cert,
        }
