#!/usr/bin/env python3
"""Bench-only webhook receiver: records every POST as one JSON line {"path", "body"}.

Stands in for the chat/paging service at the end of an Alertmanager route, so the scenario can
prove that an alert travels Prometheus -> Alertmanager -> receiver. Not part of the product.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[2] if len(sys.argv) > 2 else "/var/lib/webhook-listener/requests.jsonl"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - name fixed by http.server
        """A plain-http page for the blackbox exporter's http_2xx probe."""
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def do_POST(self):  # noqa: N802 - name fixed by http.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"path": self.path, "body": body}) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 9999), Handler).serve_forever()
