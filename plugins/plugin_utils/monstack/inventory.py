"""How the inventory's hosts are found and reached: the lookups every filter that wires hosts to each
other shares (scrape jobs, cluster peers, firewall openings, backups, Grafana's data sources, the log
shipper's Loki).

A host is reached at its monitoring_address, else its ansible_host, else its name; its settings of a
role that its neighbours need (port, web config, data directory, probe modules) are variables in its
hostvars (group_vars/all, or the inventory's): no filter reads a role's files.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


# Each hostvars[host] gathers all of that host's variables anew; the filters ask for several of
# them per host, so a host's are looked up once per hostvars object (one task's) and kept.
_HOST_VARIABLES: dict = {"hostvars": None, "hosts": {}}


def _host_variables(hostvars, host: str):
    """hostvars[host], looked up once for the hostvars given last."""
    if _HOST_VARIABLES["hostvars"] is not hostvars:
        _HOST_VARIABLES.update(hostvars=hostvars, hosts={})
    hosts = _HOST_VARIABLES["hosts"]
    if host not in hosts:
        hosts[host] = hostvars[host]
    return hosts[host]


def host_value(hostvars, host: str, name: str, default):
    """hostvars[host][name], templated by Ansible, or `default` when the host does not set it."""
    host_vars = _host_variables(hostvars, host)
    if name in host_vars:
        value = host_vars[name]
        return default if value is None else value
    return default


def scrape_address(hostvars, host: str) -> str:
    """Address Prometheus connects to for `host`: monitoring_address, else ansible_host, else the name."""
    return str(host_value(hostvars, host, "monitoring_address", "")
               or host_value(hostvars, host, "ansible_host", "") or host)


def host_url(hostvars, host: str, scheme: str, port) -> str:
    """<scheme>://<address>:<port> of `host`, reached as Prometheus reaches it (an IPv6 address bracketed)."""
    address = scrape_address(hostvars, host)
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{scheme}://{address}:{int(port)}"


# client_auth_type values of an exporter-toolkit tls_server_config (Loki's http_tls_config takes the
# same) under which the server refuses a client that presents no certificate.
CLIENT_CERT_REQUIRED = ("RequireAndVerifyClientCert", "RequireAnyClientCert")


def web_config_requires_client_cert(web) -> bool:
    """Whether a web configuration's server refuses clients without a certificate."""
    tls = (web or {}).get("tls_server_config") if isinstance(web, dict) else None
    return isinstance(tls, dict) and tls.get("client_auth_type") in CLIENT_CERT_REQUIRED


def ip_address(text: str):
    """The IP address `text` is, or None; a zone index (fe80::1%eth0) is refused, as it may hold
    anything, a newline or a space included, that would reach flags and rulesets."""
    if "%" in str(text):
        return None
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        return None


def is_ip(text: str) -> bool:
    return ip_address(text) is not None


def join_host_port(host: str, port) -> str:
    return f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"


def host_addresses(hostvars, host: str) -> list[str]:
    """IP addresses other hosts see `host` connect from: its monitoring_address or ansible_host when
    those are IP addresses, else what its facts show."""
    for name in ("monitoring_address", "ansible_host"):
        address = ip_address(str(host_value(hostvars, host, name, "") or ""))
        if address is not None:
            return [str(address)]
    facts = host_value(hostvars, host, "ansible_facts", {}) or {}
    found = [facts.get(key, {}).get("address") for key in ("default_ipv4", "default_ipv6")]
    found = [address for address in found if address]
    if not found:
        raise AnsibleFilterError(
            f"no IP address is known for {host}, which the firewall must let in: set its monitoring_address "
            f"(or ansible_host) to an IP address, or include it in the run so its facts are gathered")
    return found


def port_number(value, what: str) -> int:
    """`value` as a TCP/UDP port number, or an error naming `what` (the variable it came from)."""
    if not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise AnsibleFilterError(f"{what}: port '{value}' is not a number from 1 to 65535")
    return int(value)
