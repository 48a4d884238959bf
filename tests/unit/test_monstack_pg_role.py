"""plugins/modules/monstack_pg_role.py's password comparison and plan, against PostgreSQL's own verifiers.

The verifiers below are what PostgreSQL 17 stored for the password "correct horse 42" of a role named
monstack_vector (password_encryption scram-sha-256, then md5).
"""

from __future__ import annotations

import pytest

from conftest import load_module

pg_role = load_module("plugins/modules/monstack_pg_role.py", "monstack_pg_role_module")

PASSWORD = "correct horse 42"
SCRAM = ("SCRAM-SHA-256$4096:IXJgt576hc4FtOnTxm8Qsw==$d7/dIy6dfiCB6G5jWPfIuU2kDW+h/uI9GiRZzdr4iG0=:"
         "37FxtHRSDdQnj+GYjDCK744IzbT3peMGnp9Ah4Tvi5I=")
MD5 = "md51e9821db22ff4137021395f6ac670c23"
GOOD_ROLE = {"rolcanlogin": True, "rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
             "rolreplication": False, "rolbypassrls": False, "rolpassword": SCRAM}


def params(**given):
    return {"name": "monstack_vector", "password": "", "member_of": ["pg_monitor"], "extensions": [],
            "login_db": "postgres", **given}


@pytest.mark.parametrize("stored", [SCRAM, MD5])
def test_postgresql_verifiers_of_the_password_match_and_of_another_do_not(stored):
    assert pg_role.password_matches(stored, "monstack_vector", PASSWORD)
    assert not pg_role.password_matches(stored, "monstack_vector", PASSWORD + "x")


@pytest.mark.parametrize("stored", [None, "", "SCRAM-SHA-256$garbage", "plain"])
def test_a_missing_or_unreadable_verifier_matches_nothing(stored):
    assert not pg_role.password_matches(stored, "monstack_vector", PASSWORD)


def test_the_verifier_written_matches_its_password_and_is_salted_afresh():
    verifier = pg_role.scram_verifier(PASSWORD)
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert pg_role.password_matches(verifier, "any", PASSWORD)
    assert not pg_role.password_matches(verifier, "any", "other")
    assert verifier != pg_role.scram_verifier(PASSWORD)
    # Given PostgreSQL's salt, it is PostgreSQL's verifier.
    salt = pg_role.base64.b64decode("IXJgt576hc4FtOnTxm8Qsw==")
    assert pg_role.scram_verifier(PASSWORD, salt) == SCRAM


def test_a_converged_role_plans_nothing():
    assert pg_role.plan(params(password=PASSWORD), GOOD_ROLE, {"pg_monitor"}, {"plpgsql"}) == []


def test_a_missing_role_is_created_without_privileges_with_its_password_and_grant():
    steps = pg_role.plan(params(password=PASSWORD, extensions=["pg_stat_statements"]), None, set(), {"plpgsql"})
    assert [description for description, _, _ in steps] == [
        "create role monstack_vector", "set the password of role monstack_vector",
        "grant pg_monitor to monstack_vector", "create extension pg_stat_statements in postgres"]
    create = steps[0][1]
    assert create.startswith("CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    assert "NOREPLICATION NOBYPASSRLS" in create
    # The password reaches the server only as a query parameter's verifier, never in the statement.
    assert all(PASSWORD not in statement for _, statement, _ in steps)


def test_a_privilege_too_many_is_taken_away_and_a_changed_password_is_set():
    role = {**GOOD_ROLE, "rolsuper": True}
    steps = pg_role.plan(params(password="new one"), role, {"pg_monitor"}, set())
    assert [description for description, _, _ in steps] == [
        "set the attributes of role monstack_vector", "set the password of role monstack_vector"]


def test_an_empty_password_leaves_the_stored_one_alone():
    assert pg_role.plan(params(), {**GOOD_ROLE, "rolpassword": None}, {"pg_monitor"}, set()) == []
