#!/usr/bin/python3
"""Bench-only stand-in for Grafana's server binary. NOT Grafana; never installed outside molecule.

Grafana cannot be obtained on the test bench (no Grafana APT repository, no GitHub), so the molecule
scenario installs this program in Grafana's place, packaged in upstream's layout by build.py. It
proves what does not depend on Grafana's own code: that the unit the role writes can start the
binary, that the grafana user can read every file the role's grafana.ini names (the TLS key, the
secret files behind $__file{...}), and that the listener comes up on the configured address, port and
protocol with the configured certificate.

What it does, and nothing more:
  - reads <homepath>/conf/defaults.ini, then --config (default /etc/grafana/grafana.ini), as Grafana does;
  - reads every file a value names with $__file{path} (Grafana's variable expansion), and exits 1
    naming the key when one cannot be read;
  - serves GET /api/health (200, JSON) and GET /metrics (disabled by [metrics] enabled = false; basic
    auth when [metrics] basic_auth_username/_password are set) on [server] http_addr:http_port,
    over https with cert_file/cert_key when protocol = https;
  - exits 1 when the config or a key file cannot be read, or the protocol is not http/https.
It never judges what a setting means: database, security, SMTP, provisioning and every other section
are read only for $__file references. Those keys are checked against upstream's defaults.ini and
documentation by the unit tests, not here.
"""

from __future__ import annotations

import base64
import configparser
import hmac
import json
import os
import re
import signal
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_FILE_REF = re.compile(r"\$__file\{([^}]*)\}")


def fail(message: str) -> None:
    print(f"grafana stand-in: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse_args(argv: list[str]) -> dict:
    """Grafana's flags as the packaged units pass them; unknown flags and cfg: overrides are ignored."""
    options = {"config": "/etc/grafana/grafana.ini", "homepath": "/usr/share/grafana"}
    args = [arg for arg in argv if arg not in ("server",)]
    index = 0
    while index < len(args):
        arg = args[index].lstrip("-")
        name, _, value = arg.partition("=")
        if name in ("config", "homepath") and not value and index + 1 < len(args):
            index += 1
            value = args[index]
        if name in ("config", "homepath"):
            options[name] = value
        index += 1
    return options


def read_ini(path: str, parser: configparser.RawConfigParser, required: bool) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        if required:
            fail(f"cannot read the configuration {path}: {error.strerror}")
        return
    # Grafana's ini allows keys before the first section (app_mode, instance_name).
    try:
        parser.read_string("[__root__]\n" + text, source=path)
    except configparser.Error as error:
        fail(f"cannot parse {path}: {error}")


def expand_files(parser: configparser.RawConfigParser) -> dict:
    """Every value with its $__file{...} references read, as Grafana expands them at start."""
    values: dict = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            def read(match: re.Match, section=section, key=key) -> str:
                try:
                    with open(match.group(1), encoding="utf-8") as handle:
                        return handle.read().strip()
                except OSError as error:
                    fail(f"[{section}] {key}: cannot read {match.group(1)}: {error.strerror}")
                    return ""
            values[(section, key)] = _FILE_REF.sub(read, value)
    return values


def main(argv: list[str]) -> None:
    options = parse_args(argv)
    parser = configparser.RawConfigParser(strict=False, interpolation=None, inline_comment_prefixes=None)
    parser.optionxform = str
    read_ini(os.path.join(options["homepath"], "conf", "defaults.ini"), parser, required=False)
    read_ini(options["config"], parser, required=True)
    values = expand_files(parser)

    def get(section: str, key: str, default: str = "") -> str:
        return values.get((section, key), default)

    protocol = get("server", "protocol", "http")
    if protocol not in ("http", "https"):
        fail(f"[server] protocol = {protocol}: the stand-in serves http and https only")
    address = get("server", "http_addr")
    try:
        port = int(get("server", "http_port", "3000"))
    except ValueError:
        fail(f"[server] http_port = {get('server', 'http_port')!r} is not a number")
    metrics_enabled = get("metrics", "enabled", "true").strip().lower() == "true"
    metrics_user = get("metrics", "basic_auth_username")
    metrics_password = get("metrics", "basic_auth_password")

    context = None
    if protocol == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(get("server", "cert_file"), get("server", "cert_key"))
        except (OSError, ssl.SSLError) as error:
            fail(f"cannot load [server] cert_file {get('server', 'cert_file')!r} / cert_key "
                 f"{get('server', 'cert_key')!r}: {error}")

    class Handler(BaseHTTPRequestHandler):
        server_version = "grafana-standin"

        def reply(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def authorised(self) -> bool:
            if not (metrics_user and metrics_password):
                return True
            expected = "Basic " + base64.b64encode(f"{metrics_user}:{metrics_password}".encode()).decode()
            return hmac.compare_digest(self.headers.get("Authorization", ""), expected)

        def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
            path = self.path.split("?", 1)[0]
            if path == "/api/health":
                self.reply(200, json.dumps({"database": "ok", "version": "stand-in",
                                            "commit": "monstack-bench-stand-in"}).encode())
            elif path == "/metrics" and metrics_enabled:
                if not self.authorised():
                    self.reply(401, b"Unauthorized\n", "text/plain",
                               {"WWW-Authenticate": 'Basic realm="metrics"'})
                    return
                self.reply(200, b"# Grafana stand-in of the monstack test bench: no Grafana metrics.\n"
                                b"# TYPE grafana_standin_info gauge\ngrafana_standin_info 1\n",
                           "text/plain; version=0.0.4")
            else:
                self.reply(404, b'{"message":"Not found"}')

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by http.server
            """No access log: requests may carry credentials in headers, and the journal is checked."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    try:
        server = Server((address.strip("[]") or ("0.0.0.0"), port), Handler)
    except OSError as error:
        fail(f"cannot listen on {address or '*'}:{port}: {error.strerror}")
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"grafana stand-in: serving {protocol} on {address or '*'}:{port} "
          f"(config {options['config']})", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
