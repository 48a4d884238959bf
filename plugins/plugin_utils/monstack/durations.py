"""Durations as the daemons read them: Prometheus's own grammar and Go's time.ParseDuration, each to
seconds, -1 for what the daemon would refuse. Shared by the preflight checks (plugins/filter/settings.py)
and the wiring that derives one duration from another (plugins/filter/scrape_targets.py)."""

from __future__ import annotations

import re

# Prometheus's own duration (prometheus/common model.ParseDuration): each unit at most once, largest first.
_PROMETHEUS_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_PROMETHEUS_UNITS = (31536000, 604800, 86400, 3600, 60, 1, 0.001)
# Go's time.ParseDuration, which command-line flags parsed by kingpin's Duration() use.
_GO_DURATION = re.compile(r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600}


def prometheus_duration_seconds(duration) -> float:
    """Seconds in a Prometheus duration (15s, 1h30m, 200h, 2w); -1 when Prometheus would refuse it."""
    text = str(duration)
    if text == "0":
        return 0
    match = _PROMETHEUS_DURATION.fullmatch(text)
    if not text or not match:
        return -1
    return sum(int(number) * unit for number, unit in zip(match.groups(), _PROMETHEUS_UNITS) if number)


def go_duration_seconds(duration) -> float:
    """Seconds in a Go duration (120h, 1h30m, 1.5s, 500ms); -1 when Go would refuse it (5d, 1w)."""
    text = str(duration)
    if text in ("0", "+0", "-0"):
        return 0
    if not _GO_DURATION.fullmatch(text):
        return -1
    seconds = sum(float(number) * _GO_UNITS[unit]
                  for number, unit in re.findall("([0-9.]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", text))
    return -seconds if text.startswith("-") else seconds
