#!/usr/bin/python3
"""Bench-only stand-in for Loki, Grafana Alloy and Promtail. NOT any of them; never installed outside molecule.

None of the three can be obtained on the test bench (no Grafana APT repository, no GitHub), so the
molecule scenario `logs` installs this program in their place, packaged in upstream's layouts by
build.py (the program's name, /usr/bin/loki, /usr/bin/alloy or /usr/bin/promtail, says which it
plays). It proves what does not depend on their own code: that the unit the role writes can start the
binary under its hardening, that the daemon's user can read every file the rendered configuration
names (TLS certificate, key and CA) and write the directories it keeps state in, and that the
listener comes up on the configured address, port and protocol with the configured certificate.

What it does, and nothing more:
  loki      reads -config.file (YAML); serves GET /ready and /metrics on server.http_listen_address:
            http_listen_port, over https when server.http_tls_config has cert_file/key_file, and
            when it also has client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert)
            and client_ca_file, completes a handshake only with a client certificate of that CA (the
            listener's TLS, like TLS itself); needs common.path_prefix writable. It stores and answers
            no logs: every /loki/ path is 501.
            -verify-config: exits 0 when the file can be read and parsed (real Loki validates it all).
  promtail  reads -config.file (YAML); serves /ready and /metrics on server.http_listen_address:
            http_listen_port; needs the directory of positions.filename writable. It reads and sends
            no logs. -check-syntax: exits 0 when the file can be read and parsed.
  alloy     `alloy run [flags] <file>`: reads the file (Alloy syntax, not parsed: only its quoted
            ca_file/cert_file/key_file values are looked at); serves /-/ready, /-/healthy and /metrics
            on --server.http.listen-addr; needs --storage.path writable; re-reads the file on SIGHUP.
            It reads and sends no logs. `alloy validate <file>`: exits 0 when the file can be read.
Every program exits 1, naming the file, when the configuration or a file it names (cert_file,
key_file, ca_file, tls_ca_path and the like) cannot be read. It never judges what a setting means:
those keys are checked against upstream's references by the unit tests (tests/unit/test_log_configs.py).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KIND = os.path.basename(sys.argv[0])
_FILE_KEYS = re.compile(r"^(cert_file|key_file|ca_file|client_ca_file|tls_ca_path|tls_cert_path|tls_key_path)$")
_ALLOY_FILES = re.compile(r'^\s*(cert_file|key_file|ca_file)\s*=\s*"([^"]*)"', re.MULTILINE)
# client_auth_type values under which the server refuses a client without a certificate.
_CLIENT_CERT_REQUIRED = ("RequireAndVerifyClientCert", "RequireAnyClientCert")


def fail(message: str) -> None:
    print(f"{KIND} stand-in: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def flag(args: list[str], name: str, default: str = "") -> str:
    """Value of -name=value, --name=value or -name value (Go's flag syntax)."""
    for index, arg in enumerate(args):
        bare = arg.lstrip("-")
        if bare.startswith(name + "="):
            return bare.split("=", 1)[1]
        if bare == name and index + 1 < len(args) and not args[index + 1].startswith("-"):
            return args[index + 1]
    return default


def has_flag(args: list[str], name: str) -> bool:
    return any(arg.lstrip("-").split("=", 1)[0] == name for arg in args)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        fail(f"cannot read the configuration {path}: {error.strerror}")
    return ""


def read_yaml(path: str) -> dict:
    import yaml  # python3-yaml, a dependency of the stand-in package

    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        fail(f"cannot parse {path}: {error}")
    return data if isinstance(data, dict) else {}


def named_files(data, where: str = "") -> list[tuple[str, str]]:
    """(key path, file) of every file-naming key in a YAML configuration."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            if _FILE_KEYS.match(str(key)) and isinstance(value, str) and value:
                found.append((here, value))
            else:
                found += named_files(value, here)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += named_files(value, f"{where}[{index}]")
    return found


def check_readable(files: list[tuple[str, str]]) -> None:
    for key, path in files:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            fail(f"{key}: cannot read {path}: {error.strerror}")


def check_writable(directory: str, what: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".standin-"):
            pass
    except OSError as error:
        fail(f"{what}: cannot write in {directory}: {error.strerror}")


class Settings:
    """What the listener needs, read from the configuration (again on SIGHUP for Alloy)."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.address, self.port, self.cert, self.key = "", 0, "", ""
        self.client_ca = ""
        self.ready_paths: tuple = ()
        self.load()

    def load(self) -> None:
        args = self.args
        if KIND in ("loki", "promtail"):
            path = flag(args, "config.file") or fail("no -config.file given")
            config = read_yaml(path)
            check_readable(named_files(config))
            if has_flag(args, "verify-config") or has_flag(args, "check-syntax"):
                print(f"{KIND} stand-in: {path} is readable and parses (semantics not checked)", file=sys.stderr)
                sys.exit(0)
            server = config.get("server") or {}
            self.address = str(server.get("http_listen_address") or "")
            try:
                self.port = int(server.get("http_listen_port", 3100 if KIND == "loki" else 9080))
            except (TypeError, ValueError):
                fail(f"server.http_listen_port {server.get('http_listen_port')!r} is not a number")
            tls = server.get("http_tls_config") or {}
            self.cert, self.key = str(tls.get("cert_file") or ""), str(tls.get("key_file") or "")
            if tls.get("client_auth_type") in _CLIENT_CERT_REQUIRED:
                self.client_ca = str(tls.get("client_ca_file") or "")
            if KIND == "loki":
                prefix = str((config.get("common") or {}).get("path_prefix") or "")
                if prefix:
                    check_writable(prefix, "common.path_prefix")
                self.ready_paths = ("/ready",)
            else:
                positions = str((config.get("positions") or {}).get("filename") or "")
                if positions:
                    check_writable(os.path.dirname(positions), "positions.filename")
                self.ready_paths = ("/ready",)
        elif KIND == "alloy":
            command = args[0] if args else ""
            files = [arg for arg in args[1:] if not arg.startswith("-")]
            if command not in ("run", "validate") or len(files) != 1:
                fail("usage: alloy run|validate [flags] <config file>")
            text = read_text(files[0])
            check_readable([(match.group(1), match.group(2)) for match in _ALLOY_FILES.finditer(text)])
            if command == "validate":
                print(f"alloy stand-in: {files[0]} is readable (semantics not checked)", file=sys.stderr)
                sys.exit(0)
            storage = flag(args, "storage.path", "data-alloy/")
            check_writable(storage, "--storage.path")
            listen = flag(args, "server.http.listen-addr", "127.0.0.1:12345")
            host, _, port = listen.rpartition(":")
            self.address, self.port = host.strip("[]"), int(port)
            self.ready_paths = ("/-/ready", "/-/healthy")
        else:
            fail("this program is installed as /usr/bin/loki, /usr/bin/alloy or /usr/bin/promtail")


def main(args: list[str]) -> None:
    settings = Settings(args)
    context = None
    if settings.cert or settings.key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(settings.cert, settings.key)
        except (OSError, ssl.SSLError) as error:
            fail(f"cannot load the certificate {settings.cert!r} / key {settings.key!r}: {error}")
        if settings.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            try:
                context.load_verify_locations(cafile=settings.client_ca)
            except (OSError, ssl.SSLError) as error:
                fail(f"cannot load the client CA {settings.client_ca!r}: {error}")

    class Handler(BaseHTTPRequestHandler):
        server_version = f"{KIND}-standin"

        def reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
            path = self.path.split("?", 1)[0]
            if path in settings.ready_paths:
                self.reply(200, b"ready\n")
            elif path == "/metrics":
                self.reply(200, f"# {KIND} stand-in of the monstack test bench: no {KIND} metrics.\n"
                                f"# TYPE {KIND}_standin_info gauge\n{KIND}_standin_info 1\n".encode(),
                           "text/plain; version=0.0.4")
            elif path.startswith("/loki/"):
                self.reply(501, f"{KIND} stand-in: stores and answers no logs\n".encode())
            else:
                self.reply(404, b"404 page not found\n")

        do_POST = do_GET  # noqa: N815 - a push to the stand-in gets the same honest Not Implemented

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by http.server
            """No access log."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in settings.address else socket.AF_INET

    try:
        server = Server((settings.address or "0.0.0.0", settings.port), Handler)
    except OSError as error:
        fail(f"cannot listen on {settings.address or '*'}:{settings.port}: {error.strerror}")
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)

    def reload(*_) -> None:
        # Like Alloy: a configuration that cannot be read on reload is reported; the old one stays.
        try:
            Settings(args)
            print(f"{KIND} stand-in: configuration re-read", file=sys.stderr, flush=True)
        except SystemExit:
            print(f"{KIND} stand-in: reload failed, keeping the running configuration", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, reload)
    print(f"{KIND} stand-in: serving {'https' if context else 'http'} on {settings.address or '*'}:{settings.port}"
          + (" to clients with a certificate of " + settings.client_ca if settings.client_ca else ""),
          file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
