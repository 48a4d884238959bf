#!/usr/bin/env python3
"""Bench-only application: exports the application metrics the monitoring guides name, so the
Application Overview dashboard's expressions can be evaluated against a real Prometheus. Not part of
the product.

    bench_app.py <port>

It serves a few HTTP endpoints and counts every request it answers (http_requests_total{method, path,
status}, http_request_duration_seconds histogram, http_requests_in_flight), and calls itself once a
second so those series move. Events it has no real source for here - WebSocket and Socket.IO traffic,
realtime and chat messages, registrations, voice sessions, failed logins, rate-limit hits, blocked
IPs, active users - are simulated counters, gauges and a histogram with the guides' names. With
BENCH_REDIS_PASSWORD set it also reads one present and one absent key from the local Redis every
second, so Redis has hits and misses to report.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOCK = threading.Lock()
REQUESTS: dict[tuple[str, str, str], int] = {}
DURATION_BUCKETS = [0] * len(BUCKETS)
DURATION = {"sum": 0.0, "count": 0}
# Requests being answered right now, the scrape's own included.
IN_FLIGHT = {"value": 0}
# Simulated: (name, increment per second as (low, high)). The warehouse guide's realtime worker, the
# chat guide's business counters and the Plugspace guide's voice server among them.
COUNTER_STEPS = {
    "websocket_messages_total": (5, 20), "websocket_errors_total": (0, 1),
    "websocket_disconnections_total": (0, 2), "auth_failed_attempts_total": (0, 2),
    "rate_limit_hits_total": (0, 1), "suspicious_ip_blocks_total": (0, 1),
    "realtime_messages_processed_total": (5, 30), "chat_messages_created_total": (1, 10),
    "chat_users_registered_total": (0, 1), "voice_audio_bytes_received_total": (8000, 32000),
    "voice_audio_bytes_sent_total": (8000, 32000), "voice_session_errors_total": (0, 1),
}
GAUGE_RANGES = {"active_users": (5, 50), "websocket_connections_total": (1, 30), "socketio_connections": (1, 30),
                "websocket_active_connections": (1, 30), "voice_active_sessions": (0, 8)}
COUNTERS = {name: 0 for name in COUNTER_STEPS}
GAUGES = {name: 0 for name in GAUGE_RANGES}
# voice_session_latency_seconds (voice-to-text), one observation per second.
VOICE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VOICE_LATENCY = {"buckets": [0] * len(VOICE_BUCKETS), "sum": 0.0, "count": 0}
ROUTES = {"/": 200, "/api/items": 200, "/api/orders": 200, "/api/missing": 404, "/api/fail": 500}


def observe(method: str, path: str, status: int, seconds: float) -> None:
    with LOCK:
        key = (method, path, str(status))
        REQUESTS[key] = REQUESTS.get(key, 0) + 1
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                DURATION_BUCKETS[index] += 1
        DURATION["sum"] += seconds
        DURATION["count"] += 1


def exposition() -> bytes:
    lines = ["# TYPE http_requests_total counter"]
    with LOCK:
        for (method, path, status), value in sorted(REQUESTS.items()):
            lines.append(f'http_requests_total{{method="{method}",path="{path}",status="{status}"}} {value}')
        lines.append("# TYPE http_request_duration_seconds histogram")
        for bound, value in zip(BUCKETS, DURATION_BUCKETS):
            lines.append(f'http_request_duration_seconds_bucket{{le="{bound}"}} {value}')
        lines.append(f'http_request_duration_seconds_bucket{{le="+Inf"}} {DURATION["count"]}')
        lines.append(f'http_request_duration_seconds_sum {DURATION["sum"]}')
        lines.append(f'http_request_duration_seconds_count {DURATION["count"]}')
        lines += ["# TYPE http_requests_in_flight gauge", f"http_requests_in_flight {IN_FLIGHT['value']}"]
        lines.append("# TYPE voice_session_latency_seconds histogram")
        for bound, value in zip(VOICE_BUCKETS, VOICE_LATENCY["buckets"]):
            lines.append(f'voice_session_latency_seconds_bucket{{le="{bound}"}} {value}')
        lines.append(f'voice_session_latency_seconds_bucket{{le="+Inf"}} {VOICE_LATENCY["count"]}')
        lines.append(f'voice_session_latency_seconds_sum {VOICE_LATENCY["sum"]}')
        lines.append(f'voice_session_latency_seconds_count {VOICE_LATENCY["count"]}')
        for name, value in COUNTERS.items():
            lines += [f"# TYPE {name} counter", f"{name} {value}"]
        for name, value in GAUGES.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
    return ("\n".join(lines) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - name fixed by http.server
        with LOCK:
            IN_FLIGHT["value"] += 1
        try:
            self.answer()
        finally:
            with LOCK:
                IN_FLIGHT["value"] -= 1

    def answer(self) -> None:
        start = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, status = exposition(), 200
        else:
            status = ROUTES.get(path, 404)
            time.sleep(random.uniform(0.001, 0.05) if status == 200 else 0.002)
            body = f"{status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if path != "/metrics":
            observe("GET", path if path in ROUTES else "other", status, time.monotonic() - start)

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by http.server
        pass


def redis_reads(password: str) -> None:
    """GET a present and an absent key over RESP: one keyspace hit and one miss."""
    def command(conn, *words: str) -> bytes:
        conn.sendall(f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words))
        return conn.recv(4096)
    with socket.create_connection(("127.0.0.1", 6379), timeout=3) as conn:
        command(conn, "AUTH", password)
        command(conn, "SET", "bench:present", "1")
        command(conn, "GET", "bench:present")
        command(conn, "GET", "bench:absent")


def traffic(port: int) -> None:
    password = os.environ.get("BENCH_REDIS_PASSWORD", "")
    while True:
        for path in random.sample(list(ROUTES), 3):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3).read()
            except (urllib.error.URLError, OSError):
                pass
        with LOCK:
            for name, (low, high) in COUNTER_STEPS.items():
                COUNTERS[name] += random.randint(low, high)
            for name, (low, high) in GAUGE_RANGES.items():
                GAUGES[name] = random.randint(low, high)
            latency = random.uniform(0.05, 0.6)
            for index, bound in enumerate(VOICE_BUCKETS):
                if latency <= bound:
                    VOICE_LATENCY["buckets"][index] += 1
            VOICE_LATENCY["sum"] += latency
            VOICE_LATENCY["count"] += 1
        if password:
            try:
                redis_reads(password)
            except OSError:
                pass
        time.sleep(1)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    threading.Thread(target=traffic, args=(port,), daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
