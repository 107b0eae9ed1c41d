"""Reading privileges (``pg_privileges.read_database``) against a real server: the grants of
the managed roles and of PUBLIC are read, a foreign role's are not, and every object is in
the inventory whoever its ACL names (issue 19: the queries return every grantee and the
reader keeps the managed ones, where the queries took the managed names as a filter)."""

from __future__ import annotations

from typing import Any

import psycopg

from provisioner.core.values.grants import COLUMN, DEFAULT, PUBLIC, SCHEMA, TABLE, Grant, Obj
from provisioner.targets import pg_privileges


def test_only_managed_roles_and_public_grants_are_read(pg_admin: psycopg.Connection[Any], role_prefix: str) -> None:
    p = role_prefix
    schema = f"{p}sch"
    mine, foreign = f"{p}mine", f"{p}foreign"
    conn = pg_admin
    conn.execute(f'CREATE ROLE "{mine}" NOLOGIN')
    conn.execute(f'CREATE ROLE "{foreign}" NOLOGIN')
    try:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".shared (id int, note text)')
        conn.execute(f'CREATE TABLE "{schema}".theirs (id int, secret text)')
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{mine}", "{foreign}"')
        conn.execute(f'GRANT SELECT ON "{schema}".shared TO "{mine}", "{foreign}", PUBLIC')
        conn.execute(f'GRANT SELECT ON "{schema}".theirs TO "{foreign}"')  # its ACL names no managed role
        conn.execute(f'GRANT UPDATE (secret) ON "{schema}".theirs TO "{foreign}"')
        conn.execute(f'GRANT UPDATE (note) ON "{schema}".shared TO "{mine}"')
        conn.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO "{mine}", "{foreign}"')

        inventory, grants = pg_privileges.read_database(lambda q, params: list(conn.execute(q, params)), {mine})

        db = inventory.database
        ours = {g for g in grants if g.role in (mine, foreign) or g.obj.schema == schema}
        creator = str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
        assert ours == {
            Grant(mine, Obj(db, SCHEMA, schema), "USAGE"),
            Grant(mine, Obj(db, TABLE, schema, "shared"), "SELECT"),
            Grant(PUBLIC, Obj(db, TABLE, schema, "shared"), "SELECT"),
            Grant(mine, Obj(db, COLUMN, schema, "shared", "note"), "UPDATE"),
            Grant(mine, Obj(db, DEFAULT, schema, "tables", owner=creator), "SELECT"),
        }, ours
        assert not [g for g in grants if g.role == foreign]
        assert inventory.tables[schema] == ("shared", "theirs")  # the foreign-only ACL's table too
        assert inventory.columns[(schema, "theirs")] == ("id", "secret")
        assert inventory.columns[(schema, "shared")] == ("id", "note")
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        for role in (mine, foreign):
            conn.execute(f'DROP OWNED BY "{role}"')
