"""A retention drop that fails against a real PostgreSQL: the leaver owns a table in a
database the target does not list (``databases``), so ``DROP ROLE`` is refused.  The
role stays disabled, the run fails, and every later plan's ``drop_failed`` notice must
say what holds the role and where -- PostgreSQL says it in the error's DETAIL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from provisioner.engine.connections import Targets
from provisioner.engine.installation import open_store
from provisioner.engine.run import plan_run
from provisioner.errors import ApplyFailed
from tests.lifecycle.support import RELAXED, access, day, edit_config, person, setup
from tests.support import pg
from tests.support.fixtures import LdapOu


def other_db_dsn(name: str) -> str:
    return " ".join(p for p in pg.admin_dsn().split() if not p.startswith("dbname=")) + f" dbname={name}"


@pytest.fixture
def scratch_db(role_prefix: str) -> Iterator[str]:
    name = f"{role_prefix}scratch"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_failed_drop_names_the_database_that_still_holds_the_leaver(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, scratch_db: str
) -> None:
    p = role_prefix
    heir = f"{p}heir"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(heir)))
        home = str(conn.info.dbname)
    cat = ldap_ou.add_user("cat", **person("Trading"))
    ldap_ou.add_user("ann", **person("Trading"))
    lifecycle = f'\n[lifecycle]\nretention_days = 30\nreassign_owned_to = "{heir}"\n'
    s = setup(tmp_path, ldap_ou, p, extra=RELAXED + lifecycle)
    edit_config(s, 'drift = "report"', f'drift = "report"\ndatabases = ["{home}"]')  # as with manage_privileges
    s.apply(now=day(1))
    with psycopg.connect(other_db_dsn(scratch_db), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(f"{p}cat_scratch")))
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(f"{p}cat_scratch"), sql.Identifier(f"{p}cat"))
        )
    ldap_ou.delete(cat)
    s.apply(now=day(2))
    assert access(p)[f"{p}cat"] == (False, frozenset())

    with pytest.raises(ApplyFailed) as failed:
        s.apply(now=day(40))
    assert f"{p}cat" in access(p), "the role went although it still owns a table"
    assert access(p)[f"{p}cat"] == (False, frozenset()), "a failed drop left the leaver usable"
    assert scratch_db in str(failed.value), f"the error does not say where the leaver still owns objects: {failed.value}"
    cfg = s.config()
    store = open_store(cfg)  # as the CLI's plan: the failed drop is kept in the state store
    try:
        with Targets(cfg) as targets:
            plan = plan_run(cfg, s.ctx(cfg, store, day(41)), targets).plan
    finally:
        store.close()
    notes = [n.message for t in plan.targets for n in t.notices if n.code == "drop_failed"]
    assert len(notes) == 1 and f"{p}cat" in notes[0], notes
    assert scratch_db in notes[0], f"drop_failed does not name the database holding the leaver's objects: {notes[0]}"
