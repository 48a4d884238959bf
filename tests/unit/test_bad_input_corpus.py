"""tests/bad_input.yml, the bad-input corpus the molecule scenarios run: complete, and runnable as written."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO_ROOT

CASES = yaml.safe_load((REPO_ROOT / "tests" / "bad_input.yml").read_text())["cases"]
# The kinds of fault the issue names: text reaching unit lines, rulesets, INI, metrics files, libpq
# strings, YAML and environment files; durations; directories not the stack's; a change rolled back.
CLASSES = {"unit", "nftables", "ini", "metrics", "libpq", "yaml", "environment", "duration", "directory",
           "rollback"}
ROLES = sorted(path.name for path in (REPO_ROOT / "roles").iterdir() if path.name != "daemon")
OUTCOMES = ("refused", "accepted", "rolled_back")


def role_of(case: dict) -> str:
    """The role whose variable the case sets: the longest role name its first variable starts with."""
    variable = next(iter(case["vars"]))
    return max((role for role in ROLES if variable.startswith(role + "_")), key=len, default="")


def platforms(scenario: str) -> list[str]:
    molecule = yaml.safe_load((REPO_ROOT / "molecule" / scenario / "molecule.yml").read_text())
    return [platform["name"] for platform in molecule["platforms"]]


def test_the_corpus_has_over_50_cases_with_unique_ids():  # the README says so
    ids = [case["id"] for case in CASES]
    assert len(ids) > 50
    assert len(set(ids)) == len(ids), sorted({case for case in ids if ids.count(case) > 1})


def test_every_class_and_every_role_has_a_case():
    assert CLASSES <= {case["class"] for case in CASES}, CLASSES - {case["class"] for case in CASES}
    assert set(ROLES) <= {role_of(case) for case in CASES}, set(ROLES) - {role_of(case) for case in CASES}


def test_rollback_and_acceptance_run_on_debian_12_and_13():
    images = {}
    for case in CASES:
        molecule = yaml.safe_load((REPO_ROOT / "molecule" / case["scenario"] / "molecule.yml").read_text())
        images[case["id"]] = {p["name"]: p["image"] for p in molecule["platforms"]}[case["host"]]
    rolled_back = {images[case["id"]] for case in CASES if "rolled_back" in case}
    assert rolled_back == {"monstack/debian:bookworm", "monstack/debian:trixie"}
    assert {images[case["id"]] for case in CASES} == {"monstack/debian:bookworm", "monstack/debian:trixie"}


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_each_case_is_runnable_as_written(case):
    assert [outcome for outcome in OUTCOMES if outcome in case] != [], "a case needs an outcome"
    assert len([outcome for outcome in OUTCOMES if outcome in case]) == 1, "one outcome per case"
    assert case["class"] in CLASSES | {"type", "choice", "address", "install", "secret"}
    assert case["host"] in platforms(case["scenario"]), f"{case['host']} is not a host of {case['scenario']}"
    assert (REPO_ROOT / case.get("playbook", "site.yml")).is_file()
    assert role_of(case), f"{next(iter(case['vars']))} is no role's variable"
    if "refused" in case:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", case["refused"]) and case["refused"] in case["vars"]
    else:
        outcome = case.get("accepted") or case.get("rolled_back")
        assert outcome.get("unit"), "accepted and rolled-back cases name the unit to look at"


def test_every_scenario_with_cases_runs_them():
    for scenario in {case["scenario"] for case in CASES}:
        runner = (REPO_ROOT / "molecule" / scenario / "tests" / "test_bad_input.py").read_text()
        assert f'bad_input_cases("{scenario}")' in runner, scenario
