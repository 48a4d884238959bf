"""Listen addresses ("host:port"), parsed one way for the whole stack: the daemons' preflights and
readiness URLs (plugins/filter/daemon_web.py) and the addresses a backup run asks (backup.py)."""

from __future__ import annotations

import ipaddress
import re

_HOST_PORT = re.compile(r"^(?P<host>\[[^\]]*\]|[^\s:\[\]]*):(?P<port>[^:\]]*)$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def split_listen_address(address: str) -> dict:
    """Parse "host:port" (host may be empty, an IPv4 address, [IPv6] or a name).

    Returns {"host", "port", "error"}; error is "" when the address is valid, otherwise what is wrong,
    so that a preflight assert can name the variable and the fix.
    """
    result = {"host": "", "port": 0, "error": ""}
    match = _HOST_PORT.fullmatch(str(address))
    if not match:
        result["error"] = "must be host:port, for example 0.0.0.0:9100 or [::]:9100"
        return result
    host, port = match.group("host"), match.group("port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        result["error"] = f"port '{port}' is not a number from 1 to 65535"
        return result
    if host.startswith("["):
        try:
            if "%" in host:  # a zone index: no daemon of the stack takes one, and it may hold anything
                raise ValueError
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            result["error"] = f"'{host}' is not an IPv6 address"
            return result
    elif host and not _HOSTNAME.fullmatch(host):
        result["error"] = f"'{host}' is not an address or host name"
        return result
    result["host"], result["port"] = host, int(port)
    return result
