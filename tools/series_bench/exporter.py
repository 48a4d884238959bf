#!/usr/bin/python3
"""Synthetic series for tools/series_bench.py: one process serving N gauge series on /metrics.

Standard library only, so it runs with a bench host's own python3. Every body is rendered (and gzipped)
once at start: VARIANTS bodies with the same series and different values, served in turn, so each
scrape sees every value change at the cost of a memory copy. Series i belongs to metric name
i mod FAMILIES and has a `shard` label (one per 1000 series) and a `series` label, as an
application's series have a few labels each; so N series are the first N of any larger size, and
growing N adds series without renaming any (no churn between sizes).

    exporter.py --series 100000 --port 9911
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import itertools
import sys
import threading

FAMILIES = 10
VARIANTS = 4
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metric_name(family: int) -> str:
    return f"sbench_synthetic_{family:02d}"


def sample_value(index: int, variant: int) -> str:
    """A value in [0, 1000) with two decimals; a series' value differs from one variant to the next."""
    return f"{(index * 7919 + variant * 104729 + variant * index) % 100000 / 100:.2f}"


def render(series: int, variant: int, families: int = FAMILIES) -> str:
    """The exposition-format body of `series` gauge series (0 to series-1) in `families` metric names."""
    if series < 1 or families < 1:
        raise ValueError("series and families must be positive")
    lines = []
    # The exposition format wants a metric name's samples together: one block per name.
    for family in range(min(families, series)):
        name = metric_name(family)
        lines.append(f"# HELP {name} Synthetic series of tools/series_bench.py.")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f'{name}{{shard="{index // 1000:04d}",series="{index:07d}"}} {sample_value(index, variant)}'
                     for index in range(family, series, families))
    return "\n".join(lines) + "\n"


class Bodies:
    """The pre-rendered bodies, plain and gzipped, handed out in turn."""

    def __init__(self, series: int, variants: int = VARIANTS):
        plain = [render(series, variant).encode() for variant in range(variants)]
        self.bodies = [(body, gzip.compress(body, compresslevel=1)) for body in plain]
        self.series = series
        self._turn = itertools.cycle(range(variants))
        self._lock = threading.Lock()

    def next(self) -> tuple[bytes, bytes]:
        with self._lock:
            return self.bodies[next(self._turn)]


def handler(bodies: Bodies):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (the standard library's name)
            if self.path == "/ready":
                payload, encoding, kind = f"series {bodies.series}\n".encode(), "", "text/plain"
            elif self.path.split("?")[0] == "/metrics":
                plain, zipped = bodies.next()
                wants_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
                payload, encoding, kind = (zipped, "gzip", CONTENT_TYPE) if wants_gzip else (plain, "", CONTENT_TYPE)
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # one line per scrape would fill the journal
            pass

    return Handler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, required=True, help="number of series to serve")
    parser.add_argument("--port", type=int, default=9911)
    parser.add_argument("--address", default="0.0.0.0")
    args = parser.parse_args(argv)
    bodies = Bodies(args.series)
    server = http.server.ThreadingHTTPServer((args.address, args.port), handler(bodies))
    print(f"serving {args.series} series on {args.address}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
