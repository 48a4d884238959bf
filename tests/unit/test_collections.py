"""requirements.yml: every collection the project uses is listed, and the installed one satisfies it.

Galaxy is unreachable here, so collections come from the pinned `ansible` PyPI package; this test is
what keeps requirements.yml and that pin in step. It reads the installed collections offline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements.yml"
SCANNED = ["roles", "playbooks", "molecule", "tools", "site.yml", "ansible.cfg", ".config"]
# ns.collection.name: a module key, a filter/lookup/test in Jinja, or a plugin named in ansible.cfg.
_FQCN = re.compile(r"(?<![\w.])([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z_][a-z0-9_]*(?![\w.])")
# Collections that ship with ansible-core itself and need no entry.
_BUILTIN = {"ansible.builtin", "ansible.legacy"}


def _requirements() -> dict[str, str]:
    data = yaml.safe_load(REQUIREMENTS.read_text()) or {}
    entries = data.get("collections") or []
    return {entry["name"]: str(entry.get("version", "*")) for entry in entries}


@lru_cache(maxsize=1)
def _installed() -> dict[str, str]:
    """Installed collection -> version, the first found in Ansible's search order (the one it loads)."""
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    listing = subprocess.run(
        [str(galaxy), "collection", "list", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert listing.returncode == 0, f"{galaxy} collection list failed:\n{listing.stderr}"
    installed: dict[str, str] = {}
    for collections in json.loads(listing.stdout).values():
        for name, info in collections.items():
            installed.setdefault(name, info["version"])
    return installed


def _version_key(version: str) -> tuple:
    """Release number as a tuple of ints; a pre-release (1.2.0-beta1) sorts before its release."""
    release, _, prerelease = version.strip().partition("-")
    numbers = tuple(int(part) for part in release.split("."))
    numbers += (0,) * (3 - len(numbers))
    return numbers + ((0, prerelease) if prerelease else (1, ""),)


def satisfies(version: str, constraint: str) -> bool:
    """Galaxy-style constraint: '*', '1.2.3', '==1.2.3', or comma-separated >=, >, <=, <, !=, ==."""
    constraint = constraint.strip()
    if constraint in ("", "*"):
        return True
    have = _version_key(version)
    for clause in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)?\s*([0-9][0-9A-Za-z.\-]*)\s*", clause)
        if not match:
            raise ValueError(f"cannot read version constraint clause {clause!r}")
        operator, want = match.group(1) or "==", _version_key(match.group(2))
        ok = {
            ">=": have >= want, ">": have > want, "<=": have <= want,
            "<": have < want, "==": have == want, "!=": have != want,
        }[operator]
        if not ok:
            return False
    return True


@pytest.mark.parametrize(
    ("version", "constraint", "expected"),
    [
        ("4.8.5", ">=4.0.0,<5.0.0", True),
        ("5.0.0", ">=4.0.0,<5.0.0", False),
        ("3.9.9", ">=4.0.0,<5.0.0", False),
        ("11.4.2", "*", True),
        ("2.1.0", "2.1.0", True),
        ("2.1.0", "!=2.1.0", False),
        ("5.0.0-beta1", "<5.0.0", True),
        ("4.10.0", ">4.9.0", True),
    ],
)
def test_version_constraint_comparator(version, constraint, expected):
    assert satisfies(version, constraint) is expected


def test_requirements_lists_collections_with_version_constraints():
    requirements = _requirements()
    assert requirements, f"{REQUIREMENTS} lists no collections"
    unconstrained = sorted(name for name, constraint in requirements.items() if constraint in ("", "*"))
    assert not unconstrained, f"give these collections a version constraint in requirements.yml: {unconstrained}"


@pytest.mark.parametrize("name", sorted(_requirements()))
def test_required_collection_is_installed_in_a_satisfying_version(name):
    constraint = _requirements()[name]
    installed = _installed()
    assert name in installed, (
        f"{name} is not installed; it ships with the `ansible` package pinned in requirements.txt "
        f"(make .venv/.installed)"
    )
    assert satisfies(installed[name], constraint), (
        f"{name} {installed[name]} is installed, but requirements.yml asks for {constraint!r}: "
        "change the constraint or the `ansible` pin in requirements.txt"
    )


def _files_to_scan():
    for entry in SCANNED:
        path = REPO_ROOT / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            for suffix in ("*.yml", "*.yaml", "*.j2", "*.cfg"):
                yield from (found for found in path.rglob(suffix) if found.is_file())
    yield from (path for path in (REPO_ROOT / "inventories").rglob("*.yml"))


def _collections_used() -> dict[str, set[str]]:
    """Collection -> files using it. Only names of installed collections count, so that dotted variable
    paths (item.stat.path) are not mistaken for collections."""
    known = set(_installed())
    used: dict[str, set[str]] = {}
    for path in _files_to_scan():
        for match in _FQCN.finditer(path.read_text(errors="replace")):
            collection = f"{match.group(1)}.{match.group(2)}"
            if collection in known and collection not in _BUILTIN:
                used.setdefault(collection, set()).add(str(path.relative_to(REPO_ROOT)))
    return used


def test_every_collection_used_is_listed_in_requirements():
    used = _collections_used()
    missing = {name: sorted(files) for name, files in used.items() if name not in _requirements()}
    assert not missing, f"add these collections to requirements.yml (used in): {missing}"


def test_the_scan_finds_the_collections_the_bench_is_known_to_use():
    # Guards the scan itself: if it found nothing, the test above would pass vacuously.
    used = _collections_used()
    assert {"community.docker", "community.general"} <= set(used), f"the scan found only {sorted(used)}"
