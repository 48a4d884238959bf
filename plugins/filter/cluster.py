"""Alertmanager's cluster peers, derived from the inventory (roles/alertmanager)."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.inventory import is_ip, join_host_port, scrape_address  # noqa: E402


def cluster_flags(hostvars, members: list, me: str, port, advertise_ip: str = "") -> list:
    """Alertmanager's --cluster.* flags for `me` in a cluster of `members` (inventory names).

    A single member gets clustering switched off (empty listen address): there is no one to gossip
    with, and an open gossip port would be one more thing to firewall. Peers are reached like scrape
    targets (monitoring_address, ansible_host, name). Alertmanager accepts only an IP address to
    advertise; without one it picks the first private address of the host's interfaces.
    """
    if len(members) < 2:
        return ["--cluster.listen-address="]
    flags = [f"--cluster.listen-address=0.0.0.0:{int(port)}"]
    if not advertise_ip:
        candidate = scrape_address(hostvars, me)
        advertise_ip = candidate if is_ip(candidate) else ""
    if advertise_ip:
        if not is_ip(advertise_ip):
            raise AnsibleFilterError(f"{me}: the cluster advertise address '{advertise_ip}' is not an IP address")
        flags.append(f"--cluster.advertise-address={join_host_port(advertise_ip, port)}")
    flags += [f"--cluster.peer={join_host_port(scrape_address(hostvars, peer), port)}"
              for peer in members if peer != me]
    return flags


class FilterModule:
    def filters(self):
        return {"cluster_flags": cluster_flags}
