"""Filters for daemon endpoints: listen addresses and exporter-toolkit web configuration.

Used by roles/daemon and by every service role, so that a listen address is parsed (with
plugins/plugin_utils/monstack/listen.py, which backup.py shares) and a password hashed in exactly one
way across the stack.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import combine

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.listen import split_listen_address  # noqa: E402

# bcrypt's own base64 alphabet (not the MIME one); see the OpenBSD bcrypt paper.
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_MIME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_BCRYPT = str.maketrans(_MIME_ALPHABET, _BCRYPT_ALPHABET)

# Cost 10: the exporter toolkit checks the hash on every scrape that misses its cache, and higher
# costs make scrapes slow without protecting a password that is long and random anyway.
BCRYPT_COST = 10

def listen_address_problems(address: str, port, role: str) -> str:
    """What is wrong with `<role>_listen_address` given `<role>_port`, as "<variable>: <problem>"
    (settings_problems' form); "" when nothing.

    Prometheus finds a daemon on `<role>_port`, so the listen address must use that very port."""
    if not str(port).isdigit() or not 1 <= int(port) <= 65535:
        return f"{role}_port: '{port}' is not a number from 1 to 65535"
    parsed = split_listen_address(address)
    if parsed["error"]:
        return f"{role}_listen_address: '{address}' {parsed['error']}"
    if parsed["port"] != int(port):
        return (f"{role}_listen_address: '{address}' listens on port {parsed['port']} but {role}_port is {port}: "
                f"Prometheus connects to {role}_port, so set both to the same port")
    return ""


def local_url(address: str, scheme: str = "http", path: str = "/") -> str:
    """URL a host uses to reach its own daemon listening on `address` (wildcards become loopback)."""
    parsed = split_listen_address(address)
    if parsed["error"]:
        raise AnsibleFilterError(f"listen address '{address}' {parsed['error']}")
    host = parsed["host"]
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "[::]":
        host = "[::1]"
    return f"{scheme}://{host}:{parsed['port']}{path}"


def stable_bcrypt(password: str, seed: str, cost: int = BCRYPT_COST) -> str:
    """bcrypt hash whose salt is derived from `seed`, so the same password and seed give the same
    hash on every run (no change reported, no restart) while differing between hosts and users."""
    try:
        import bcrypt
    except ImportError as exc:  # pragma: no cover - requirements.txt installs it
        raise AnsibleFilterError("stable_bcrypt needs the Python package 'bcrypt' on the controller") from exc
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("stable_bcrypt: the password must be a non-empty string")
    digest = hashlib.sha256(f"monstack-web-config:{seed}".encode()).digest()[:16]
    salt_chars = base64.b64encode(digest).decode()[:22].translate(_TO_BCRYPT)
    salt = f"$2b${cost:02d}${salt_chars}".encode()
    return bcrypt.hashpw(password.encode(), salt).decode()


# Top-level keys of the exporter-toolkit web configuration file (docs/web-configuration.md upstream).
WEB_CONFIG_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")


def web_config_problems(web_config: dict, name: str = "") -> str:
    """What is wrong with a web configuration given to a role ("" when nothing is), for preflight
    asserts: the daemon would refuse to start on an unknown key, after the file had been replaced.
    With `name`, as "<name>: <problem>" (settings_problems' form)."""
    problem = ""
    if not isinstance(web_config, dict):
        problem = "must be a dictionary in exporter-toolkit form"
    elif sorted(set(web_config) - set(WEB_CONFIG_KEYS)):
        unknown = sorted(set(web_config) - set(WEB_CONFIG_KEYS))
        problem = f"has unknown keys {', '.join(unknown)}; it accepts only {', '.join(WEB_CONFIG_KEYS)}"
    else:
        users = web_config.get("basic_auth_users") or {}
        if not isinstance(users, dict) or not all(isinstance(v, str) and v for v in users.values()):
            problem = "basic_auth_users must map each user name to a non-empty plaintext password"
    return f"{name}: {problem}" if name and problem else problem


def web_config_render(web_config: dict, seed: str) -> dict:
    """The exporter-toolkit web config with `basic_auth_users` given as {user: plaintext password}
    turned into {user: bcrypt hash}. Everything else passes through in upstream's own structure."""
    if web_config is None:
        return {}
    if not isinstance(web_config, dict):
        raise AnsibleFilterError("the web configuration must be a dictionary in exporter-toolkit form")
    rendered = dict(web_config)
    users = rendered.get("basic_auth_users") or {}
    if users:
        rendered["basic_auth_users"] = {
            user: stable_bcrypt(str(password), f"{seed}/{user}") for user, password in sorted(users.items())
        }
    else:
        rendered.pop("basic_auth_users", None)
    return rendered


# What each install method needs, said when it is missing.
_INSTALL_NEEDS = {
    "package": "the package name and the absolute path of the binary it installs (and an APT repository URL, if "
               "one is given, as http(s) or file)",
    "deb": "the package name and the absolute path of the binary the .deb installs, archive_sha256 (64 hex "
           "digits), and archive_url or archive_file",
    "archive": "archive_sha256 (64 hex digits), archive_binary, and archive_url or archive_file",
}


def daemon_settings_problems(settings) -> list:
    """What is wrong with a completed daemon dictionary (roles/daemon's checks), as sentences."""
    install, name = settings["install"], settings["name"]
    method = install.get("method")
    complete = {
        "package": bool(install.get("package")) and str(install.get("package_binary", "")).startswith("/")
        and re.match(r"^((https?|file)://.*)?$", str((install.get("apt_repository") or {}).get("url", ""))),
        "deb": bool(install.get("package")) and str(install.get("package_binary", "")).startswith("/")
        and re.match(r"^[0-9a-fA-F]{64}$", str(install.get("archive_sha256", "")))
        and bool(str(install.get("archive_url", "")) + str(install.get("archive_file", ""))),
        "archive": re.match(r"^[0-9a-fA-F]{64}$", str(install.get("archive_sha256", "")))
        and bool(install.get("archive_binary"))
        and bool(str(install.get("archive_url", "")) + str(install.get("archive_file", ""))),
    }
    problems = []
    if method not in complete:
        problems.append(f"{name}: install method must be one of {', '.join(complete)}, not {method!r}")
    elif not complete[method]:
        problems.append(f"{name}: install method '{method}' needs {_INSTALL_NEEDS[method]}")
    unexplained = sorted(key for key, value in (settings["unit"].get("exceptions") or {}).items()
                         if not isinstance(value, dict) or "why" not in value)
    if unexplained:
        problems.append(f"{name}: every unit exception needs a 'why' ({', '.join(unexplained)} has none)")
    accounts = [settings.get("user"), settings.get("group")] + list(settings.get("groups") or [])
    wrong = [str(account) for account in accounts if not _ACCOUNT_NAME.fullmatch(str(account))]
    if wrong:
        problems.append(f"{name}: {', '.join(repr(account) for account in wrong)} is not a user or group name "
                        f"(lower case letters, digits, '_' or '-', at most 32)")
    if not re.match(r"^https?://", str(settings["ready"].get("url", ""))):
        problems.append(f"{name}: the readiness check needs ready.listen_address (with ready.path) or an http(s) "
                        f"ready.url, not {settings['ready'].get('url')!r}")
    if bool(settings["ready"].get("client_cert")) != bool(settings["ready"].get("client_key")):
        problems.append(f"{name}: the readiness check needs both ready.client_cert and ready.client_key, or neither")
    return problems


def _ready_check(settings: dict, tls: bool) -> dict:
    """The readiness check with what the caller left to the other settings filled in: the URL from
    ready.listen_address and ready.path (https when the daemon serves TLS), and the user of the web
    configuration's first basic-auth user, so that no role works them out on its own. The password
    stays out (daemon_ready_password reads it when a check runs): the settings are a fact, which
    -v and every callback would show."""
    ready = {key: value for key, value in settings["ready"].items() if key != "password"}
    if not ready.get("url") and ready.get("listen_address"):
        ready["url"] = local_url(ready["listen_address"], "https" if tls else "http", ready.get("path") or "/")
    users = (settings.get("web_config") or {}).get("basic_auth_users") or {}
    if not ready.get("username") and users:
        ready["username"] = next(iter(users))
    return ready


def daemon_ready_password(spec) -> str:
    """The password of the readiness check of a daemon spec: ready.password, else the web
    configuration's password of the readiness user (the first basic-auth user, as _ready_check)."""
    ready = spec.get("ready") or {}
    if ready.get("password"):
        return str(ready["password"])
    users = (spec.get("web_config") or {}).get("basic_auth_users") or {}
    user = ready.get("username") or next(iter(users), "")
    return str(users.get(user, ""))


_ACCOUNT_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def daemon_settings(spec, defaults, tls_group, host=""):
    """roles/daemon's dictionary of one daemon: the caller's spec over every default, the TLS group
    added when the daemon serves TLS, the readiness check completed (_ready_check) and the web
    configuration's passwords replaced by their bcrypt hashes (seeded by `host` and the daemon, as the
    file holds them); refused, naming what is wrong, when incomplete. One filter call, so the caller's
    spec (often derived from the whole inventory) is templated once, not once per reference, and
    checked without a task of its own. No plaintext password is left in it."""
    settings = combine(defaults, spec, recursive=True)
    tls = bool(settings.get("tls")) or "tls_server_config" in (settings.get("web_config") or {})
    if tls:
        settings["groups"] = list(settings.get("groups") or []) + [tls_group]
    settings["ready"] = _ready_check(settings, tls)
    problems = daemon_settings_problems(settings)
    if problems:
        raise AnsibleFilterError("; ".join(problems) + ". Nothing was changed.")
    if settings.get("web_config") is not None:
        settings["web_config"] = web_config_render(settings["web_config"], f"{host}/{settings['name']}")
    return settings


class FilterModule:
    def filters(self):
        return {
            "daemon_settings": daemon_settings,
            "daemon_ready_password": daemon_ready_password,
            "split_listen_address": split_listen_address,
            "local_url": local_url,
            "listen_address_problems": listen_address_problems,
            "stable_bcrypt": stable_bcrypt,
            "web_config_render": web_config_render,
            "web_config_problems": web_config_problems,
        }
