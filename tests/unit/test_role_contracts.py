"""Every role's contract: meta/argument_specs.yml and defaults/main.yml say the same thing.

A variable a user can set is documented once (argument_specs, which Ansible also enforces), has its
default in defaults/main.yml with a comment saying what it changes, and carries the role's prefix.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(path for path in (REPO_ROOT / "roles").iterdir() if path.is_dir())


def _default_files(role: Path) -> list[Path]:
    """defaults/main.yml, or the files of a defaults/main/ directory (Ansible merges them in name order)."""
    single = role / "defaults" / "main.yml"
    return [single] if single.is_file() else sorted((role / "defaults" / "main").glob("*.yml"))


ROLES_WITH_DEFAULTS = [role for role in ROLES if _default_files(role)]

# Defaults that are deliberately not options of the role's `main` entry point, with the reason.
UNDOCUMENTED_DEFAULTS_ALLOWED = {
    "daemon": {
        "daemon_artifact_dir": "site-wide setting read by every caller; the main entry point's only "
        "option is the caller-built `daemon_spec` dict",
        "daemon_ready_timeout": "site-wide setting read by every caller; the main entry point's only "
        "option is the caller-built `daemon_spec` dict",
        "daemon_tls_group": "site-wide setting read by every caller; the main entry point's only "
        "option is the caller-built `daemon_spec` dict",
    },
}

_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _load(path: Path):
    with path.open() as handle:
        return yaml.safe_load(handle)


def _defaults(role: Path) -> dict:
    merged: dict = {}
    for path in _default_files(role):
        merged.update(_load(path) or {})
    return merged


def _main_options(role: Path) -> dict:
    specs = _load(role / "meta" / "argument_specs.yml") or {}
    main = (specs.get("argument_specs") or {}).get("main")
    assert main is not None, f"{role.name}: meta/argument_specs.yml has no `main` entry point"
    return main.get("options") or {}


def _options_without_description(options: dict, prefix: str = "") -> list[str]:
    missing = []
    for name, spec in (options or {}).items():
        spec = spec or {}
        description = spec.get("description")
        if not description or (isinstance(description, list) and not any(description)):
            missing.append(prefix + name)
        missing += _options_without_description(spec.get("options"), f"{prefix}{name}.")
    return missing


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_role_has_argument_specs(role):
    assert (role / "meta" / "argument_specs.yml").is_file(), f"{role.name}: add meta/argument_specs.yml"


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_every_option_of_every_entry_point_has_a_description(role):
    specs = _load(role / "meta" / "argument_specs.yml") or {}
    missing = []
    for entry_point, spec in (specs.get("argument_specs") or {}).items():
        missing += [f"{entry_point}: {name}" for name in _options_without_description(spec.get("options"))]
    assert not missing, f"{role.name}: options without a description in meta/argument_specs.yml: {missing}"


@pytest.mark.parametrize("role", ROLES_WITH_DEFAULTS, ids=lambda role: role.name)
def test_every_default_is_documented_in_argument_specs(role):
    allowed = UNDOCUMENTED_DEFAULTS_ALLOWED.get(role.name, {})
    undocumented = sorted(set(_defaults(role)) - set(_main_options(role)) - set(allowed))
    assert not undocumented, (
        f"{role.name}: defaults/main.yml sets {undocumented}, which meta/argument_specs.yml (main) does not "
        "describe; add them as options there"
    )


@pytest.mark.parametrize("role", ROLES_WITH_DEFAULTS, ids=lambda role: role.name)
def test_every_optional_option_has_its_default_in_defaults(role):
    options = _main_options(role)
    optional = {name for name, spec in options.items() if not (spec or {}).get("required")}
    missing = sorted(optional - set(_defaults(role)))
    assert not missing, f"{role.name}: options {missing} are not required but have no value in defaults/main.yml"


@pytest.mark.parametrize("role", ROLES_WITH_DEFAULTS, ids=lambda role: role.name)
def test_allowlisted_undocumented_defaults_still_exist(role):
    stale = sorted(set(UNDOCUMENTED_DEFAULTS_ALLOWED.get(role.name, {})) - set(_defaults(role)))
    assert not stale, f"{role.name}: remove {stale} from UNDOCUMENTED_DEFAULTS_ALLOWED in {Path(__file__).name}"


@pytest.mark.parametrize("role", ROLES_WITH_DEFAULTS, ids=lambda role: role.name)
def test_spec_defaults_equal_the_defaults_file(role):
    defaults = _defaults(role)
    differing = {
        name: {"argument_specs": spec["default"], "defaults/main.yml": defaults.get(name)}
        for name, spec in _main_options(role).items()
        if "default" in (spec or {}) and (name not in defaults or spec["default"] != defaults[name])
    }
    assert not differing, f"{role.name}: argument_specs and defaults/main.yml disagree: {differing}"


@pytest.mark.parametrize("role", ROLES_WITH_DEFAULTS, ids=lambda role: role.name)
def test_every_default_carries_the_role_prefix(role):
    unprefixed = sorted(name for name in _defaults(role) if not name.startswith(f"{role.name}_"))
    assert not unprefixed, f"{role.name}: rename {unprefixed} to start with '{role.name}_'"


@pytest.mark.parametrize("role", ROLES_WITH_DEFAULTS, ids=lambda role: role.name)
def test_every_default_has_a_comment_above_it(role):
    uncommented = []
    for path in _default_files(role):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            match = _TOP_LEVEL_KEY.match(line)
            if match and (number == 0 or not lines[number - 1].lstrip().startswith("#")):
                uncommented.append(f"{path.name} line {number + 1}: {match.group(1)}")
    assert not uncommented, (
        f"{role.name}: defaults/main.yml variables without a one-line '# what it changes' comment above: "
        f"{uncommented}"
    )
