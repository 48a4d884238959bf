#!/usr/bin/python
"""A PostgreSQL login role with no privilege of its own, its memberships and extensions: one run.

community.postgresql needs a module run each for the role, its memberships and an extension (half a
second each on every rerun); this does what the postgres_exporter role needs of them in one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: monstack_pg_role
short_description: a PostgreSQL login role without privileges, its memberships and extensions, in one run
description:
  - Creates the role if it is missing, as LOGIN with no superuser, CREATEDB, CREATEROLE, REPLICATION
    or BYPASSRLS attribute, and takes away any of those a role of that name holds.
  - Sets its password when one is given and the stored one does not match it (SCRAM-SHA-256 and md5
    verifiers are compared). The verifier is computed here, so PostgreSQL never receives the password
    itself, in its logs or anywhere else.
  - Grants it the roles in O(member_of) it is not a member of yet (other memberships are left alone),
    and creates the extensions in O(extensions) missing from O(login_db).
  - Connects over the Unix socket as the user the module runs as, who must be a superuser (run it with
    become_user postgres).
options:
  name: {description: the role, type: str, required: true}
  password:
    description:
      - Its password; empty leaves the role's password as it is. ASCII passwords are used as they are;
        others are NFKC-normalized, the main step of the SASLprep PostgreSQL applies.
    type: str
    default: ""
  member_of: {description: roles it is granted, type: list, elements: str, default: []}
  extensions: {description: extensions created in O(login_db), type: list, elements: str, default: []}
  login_db: {description: database to connect to, type: str, default: postgres}
  login_unix_socket: {description: directory of the server's Unix socket, type: str, default: /var/run/postgresql}
requirements: [python3-psycopg2 on the host]
"""

RETURN = r"""
changes: {description: what was done (or would be, in check mode), without the password, type: list}
"""

# The attributes of a login role with no privilege of its own: (pg_authid column, wanted, SQL keyword).
ATTRIBUTES = (
    ("rolcanlogin", True, "LOGIN"),
    ("rolsuper", False, "NOSUPERUSER"),
    ("rolcreatedb", False, "NOCREATEDB"),
    ("rolcreaterole", False, "NOCREATEROLE"),
    ("rolreplication", False, "NOREPLICATION"),
    ("rolbypassrls", False, "NOBYPASSRLS"),
)
SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def _normalized(password: str) -> bytes:
    return (password if password.isascii() else unicodedata.normalize("NFKC", password)).encode()


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _normalized(password), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for the password (a random salt unless given)."""
    salt = os.urandom(16) if salt is None else salt
    stored_key, server_key = _scram_keys(password, salt, iterations)
    encode = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{encode(salt)}${encode(stored_key)}:{encode(server_key)}"


def password_matches(stored: str | None, name: str, password: str) -> bool:
    """Whether the verifier PostgreSQL holds for the role (pg_authid.rolpassword) is of the password."""
    if not stored:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            iterations, salt = stored.split("$")[1].split(":")
            stored_key, server_key = stored.split("$")[2].split(":")
            expected = _scram_keys(password, base64.b64decode(salt), int(iterations))
        except (ValueError, IndexError):
            return False
        return (hmac.compare_digest(expected[0], base64.b64decode(stored_key))
                and hmac.compare_digest(expected[1], base64.b64decode(server_key)))
    if stored.startswith("md5"):
        return hmac.compare_digest(stored, "md5" + hashlib.md5(_normalized(password) + name.encode()).hexdigest())
    return False


def plan(params: dict, role: dict | None, memberships: set[str], extensions: set[str]) -> list[tuple[str, str, tuple]]:
    """What to do, from what the server holds: (description, SQL with {} for identifiers, identifiers).

    The SQL's one %s, where there is one, is the password verifier, passed as a query parameter."""
    name, steps = params["name"], []
    keywords = " ".join(keyword for _, _, keyword in ATTRIBUTES)
    if role is None:
        steps.append((f"create role {name}", "CREATE ROLE {} WITH " + keywords, (name,)))
    elif any(role[column] != wanted for column, wanted, _ in ATTRIBUTES):
        steps.append((f"set the attributes of role {name}", "ALTER ROLE {} WITH " + keywords, (name,)))
    if params["password"] and not password_matches((role or {}).get("rolpassword"), name, params["password"]):
        steps.append((f"set the password of role {name}", "ALTER ROLE {} WITH PASSWORD %s", (name,)))
    for group in params["member_of"]:
        if group not in memberships:
            steps.append((f"grant {group} to {name}", "GRANT {} TO {}", (group, name)))
    for extension in params["extensions"]:
        if extension not in extensions:
            steps.append((f"create extension {extension} in {params['login_db']}",
                          "CREATE EXTENSION IF NOT EXISTS {}", (extension,)))
    return steps


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "default": "", "no_log": True},
            "member_of": {"type": "list", "elements": "str", "default": []},
            "extensions": {"type": "list", "elements": "str", "default": []},
            "login_db": {"type": "str", "default": "postgres"},
            "login_unix_socket": {"type": "str", "default": "/var/run/postgresql"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        import psycopg2
        from psycopg2 import sql
    except ImportError:
        module.fail_json(msg="python3-psycopg2 is not installed on the host")
    done: list[str] = []
    try:
        connection = psycopg2.connect(dbname=params["login_db"], host=params["login_unix_socket"])
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(column for column, _, _ in ATTRIBUTES)
                           + ", rolpassword FROM pg_authid WHERE rolname = %s", (params["name"],))
            row = cursor.fetchone()
            role = dict(zip([column for column, _, _ in ATTRIBUTES] + ["rolpassword"], row)) if row else None
            cursor.execute("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                           "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (params["name"],))
            memberships = {group for (group,) in cursor.fetchall()}
            cursor.execute("SELECT extname FROM pg_extension")
            extensions = {extension for (extension,) in cursor.fetchall()}
            steps = plan(params, role, memberships, extensions)
            for description, statement, identifiers in steps if not module.check_mode else []:
                query = sql.SQL(statement).format(*map(sql.Identifier, identifiers))
                cursor.execute(query, (scram_verifier(params["password"]),) if "%s" in statement else None)
                done.append(description)
        connection.close()
    except psycopg2.Error as error:
        # What was done before the failure is still reported, so the operator knows.
        module.fail_json(msg=f"PostgreSQL: {str(error).strip()}", changed=bool(done), changes=done)
    module.exit_json(changed=bool(steps), changes=[description for description, _, _ in steps])


if __name__ == "__main__":
    main()
