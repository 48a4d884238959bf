"""Lets every scenario's testinfra tests import the shared helpers in tests/bench_checks.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
