"""The short-circuit's catalog digest against a real PostgreSQL: stable while nothing changes,
different after every kind of role-catalog change a plan could depend on -- alike whether the
short-circuit takes it alone (``catalog_digest``) or the warm read takes it in the snapshot it
then inspects (``inspect_if_moved``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.targets import pg_inspect
from provisioner.targets.postgres import PostgresTarget

Conn = psycopg.Connection[Any]


def _run(conn: Conn, template: str, *names: str) -> None:
    conn.execute(sql.SQL(template).format(*(sql.Identifier(n) for n in names)))


CHANGES: dict[str, Callable[[Conn, str], None]] = {
    "login": lambda c, p: _run(c, "ALTER ROLE {} LOGIN", p + "u"),
    "createdb": lambda c, p: _run(c, "ALTER ROLE {} CREATEDB", p + "u"),
    "inherit": lambda c, p: _run(c, "ALTER ROLE {} NOINHERIT", p + "u"),
    "connection limit": lambda c, p: _run(c, "ALTER ROLE {} CONNECTION LIMIT 3", p + "u"),
    "valid until": lambda c, p: _run(c, "ALTER ROLE {} VALID UNTIL '2031-01-01'", p + "u"),
    "comment": lambda c, p: _run(c, "COMMENT ON ROLE {} IS 'provisioner:managed {{}}'", p + "u"),
    "comment changed": lambda c, p: _run(c, "COMMENT ON ROLE {} IS 'provisioner:managed {{\"id\": 1}}'", p + "m"),
    "comment removed": lambda c, p: _run(c, "COMMENT ON ROLE {} IS NULL", p + "m"),
    "grant": lambda c, p: _run(c, "GRANT {} TO {}", p + "g", p + "u"),
    "revoke": lambda c, p: _run(c, "REVOKE {} FROM {}", p + "g", p + "m"),
    "admin option": lambda c, p: _run(c, "GRANT {} TO {} WITH ADMIN OPTION", p + "g", p + "m"),
    "new role": lambda c, p: _run(c, "CREATE ROLE {}", p + "new"),
    "drop and re-create": lambda c, p: (_run(c, "DROP ROLE {}", p + "u"), _run(c, "CREATE ROLE {}", p + "u")),
    "rename": lambda c, p: _run(c, "ALTER ROLE {} RENAME TO {}", p + "u", p + "renamed"),
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_the_digest_and_the_warm_read_see_every_kind_of_change(
    kind: str, pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    for name in ("u", "g", "m"):
        _run(pg_admin, "CREATE ROLE {} NOLOGIN", role_prefix + name)
    _run(pg_admin, "GRANT {} TO {}", role_prefix + "g", role_prefix + "m")
    _run(pg_admin, "COMMENT ON ROLE {} IS 'provisioner:managed {{}}'", role_prefix + "m")
    pg_admin.commit()
    before = pg_target.catalog_digest()
    assert pg_target.catalog_digest() == before
    kept: dict[str, Any] = {}
    taken, state = pg_target.inspect_if_moved(None, kept)
    assert taken == before, "the warm read takes the very digest the short-circuit compares"
    assert state is not None and role_prefix + "m" in state.roles, "no digest to compare: read"
    assert pg_target.inspect_if_moved(before, kept) == (before, None), "unchanged: not read again"
    CHANGES[kind](pg_admin, role_prefix)
    pg_admin.commit()
    after = pg_target.catalog_digest()
    assert after != before
    taken, state = pg_target.inspect_if_moved(before, kept)
    assert taken == after
    assert state is not None and state.roles == pg_target.inspect().roles, "moved: read, as a full inspect reads"


def test_the_whole_catalog_reads_are_planned_without_nested_loops(pg_admin: Conn) -> None:
    """Statistics taken while a large first sync was open can make the planner join every role
    with every comment in a nested loop (65 s at 50,000 roles): the digest and the keys are read
    with hash joins, and the setting is restored for the reads of named roles."""
    query = lambda text, params: pg_admin.execute(text, params)  # noqa: E731
    setting = "SELECT current_setting('enable_nestloop')"
    with pg_admin.transaction():
        with pg_inspect.hash_joins(query):
            assert pg_admin.execute(setting).fetchone() == ("off",)
            for text in (pg_inspect.CATALOG_DIGEST_QUERY, pg_inspect.ROLE_HASHES_QUERY):
                plan = "\n".join(row[0] for row in pg_admin.execute("EXPLAIN " + text))
                # the joins of roles, comments and memberships are hashed; a nested loop is left only
                # where each role meets its own projection (a Result node, one row)
                assert "Hash Cond" in plan and "Join Filter" not in plan and "Materialize" not in plan, plan
        assert pg_admin.execute(setting).fetchone() == ("on",)
        assert pg_inspect.catalog_digest(query) and pg_inspect.role_keys(query)
        assert pg_admin.execute(setting).fetchone() == ("on",)


def test_the_named_keys_look_each_comment_up_by_its_role(pg_admin: Conn) -> None:
    """The read-back's keys of named roles find each role's comment by the role's oid, whatever
    the planner estimates: joined instead, statistics taken before a first sync's comments
    existed made PostgreSQL scan every role comment once per named role (3.9 s for 1,300 names
    among 100,000 roles in the warm 50k churn run). With nested loops discouraged -- one way the
    planner is pushed off the index -- the lookup stays per role."""
    names = ["postgres", "pg_monitor", "pg_read_all_data"]
    with pg_admin.transaction():
        pg_admin.execute("SELECT set_config('enable_nestloop', 'off', true)")
        plan = "\n".join(row[0] for row in pg_admin.execute("EXPLAIN " + pg_inspect.ROLE_HASHES_NAMED_QUERY, (names,)))
        lines = plan.splitlines()
        scans = [i for i, line in enumerate(lines) if "on pg_shdescription" in line]
        # each scan of the comments is parameterised by the role's oid (an index lookup, or a
        # filtered scan while the catalog is a page or two), never a join over all comments
        assert scans and all("(objoid = pg_authid.oid)" in lines[i + 1] for i in scans), plan
        assert "d.objoid" not in plan, plan
    keys = dict(pg_admin.execute(pg_inspect.ROLE_HASHES_NAMED_QUERY, (names,)).fetchall())
    every = dict(pg_admin.execute(pg_inspect.ROLE_HASHES_QUERY).fetchall())
    assert set(keys) == set(names) and all(keys[n] == every[n] for n in names)
