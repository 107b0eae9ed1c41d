"""A full joiner / mover / leaver scenario over simulated days, against a real
slapd and PostgreSQL: future hire, mover, future leave (VALID UNTIL, then the
disable at that instant with the leaver's session ended), rename, rehire and
retention expiry (dropped, owned objects reassigned in every database)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.core.identity.lifecycle import EventKindName, next_lifecycle_events
from provisioner.core.values.plan import ChangeKind
from provisioner.engine.connections import Targets
from provisioner.engine.run import plan_run
from tests.lifecycle.support import RELAXED, access, applied_changes, day, person, setup
from tests.support import pg
from tests.support.e2e import Setup
from tests.support.fixtures import LdapOu


def owner(dsn: str, table: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)).fetchone()
    assert row is not None
    return str(row[0])


def other_db_dsn(name: str) -> str:
    return " ".join(p for p in pg.admin_dsn().split() if not p.startswith("dbname=")) + f" dbname={name}"


@pytest.fixture
def extra_db(role_prefix: str) -> Any:
    name = f"{role_prefix}db"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def empty_after(s: Setup, when: Any) -> None:
    assert not s.plan(now=when).has_changes, "a second plan after apply must be empty"


def test_joiner_mover_leaver_over_simulated_days(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, extra_db: str
) -> None:
    p = role_prefix
    heir = f"{p}heir"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(heir)))
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    bob = ldap_ou.add_user("bob", **person("Operations", hrHireDate="20310103"))
    ldap_ou.add_user("cat", **person("Trading", hrLeaveDate="20310104"))  # last working day: day 4
    ldap_ou.add_user("dan", **person("Trading"))
    lifecycle = f'\n[lifecycle]\nretention_days = 30\nreassign_owned_to = "{heir}"\n'
    s = setup(tmp_path, ldap_ou, p, extra=RELAXED + lifecycle)
    with pg.admin_connect() as conn:  # to end a leaver's sessions
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(s.login)))

    # day 1: ann, cat, dan join; bob is hired on day 3; cat leaves at the end of day 4 (day 5 00:00 UTC)
    plan = s.apply(now=day(1))
    notices = {(n.code, n.role) for t in plan.targets for n in t.notices}
    assert ("scheduled_joiner", f"{p}bob") in notices and ("scheduled_disable", f"{p}cat") in notices
    now = access(p)
    assert f"{p}bob" not in now
    assert now[f"{p}ann"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    cfg = s.config()
    with Targets(cfg) as targets:
        desired = plan_run(cfg, s.ctx(cfg, now=day(1)), targets).desired
    events = [(e.at, e.role, e.kind) for e in next_lifecycle_events(desired, day(1))]
    leave_at = day(5, 0)
    assert events == [(day(3, 0), f"{p}bob", EventKindName.HIRE), (leave_at, f"{p}cat", EventKindName.LEAVE)]
    with pg.admin_connect() as conn:
        until = conn.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (f"{p}cat",)).fetchone()
    assert until is not None and until[0] == leave_at
    empty_after(s, day(1))

    # day 3: bob's hire date
    s.apply(now=day(3))
    assert access(p)[f"{p}bob"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    empty_after(s, day(3))

    # day 4: ann moves to Operations: revoke and grant in one run
    ldap_ou.modify(ldap_ou.user_dn("ann"), departmentNumber="Operations")
    plan = s.apply(now=day(4))
    assert {(c.kind, c.param("group")) for c in plan.changes} == {
        (ChangeKind.REVOKE_MEMBERSHIP, f"{p}trade_executor"),
        (ChangeKind.GRANT_MEMBERSHIP, f"{p}ops_settlement"),
    }
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))

    # day 5 00:00: cat's leave date; she is connected and owns tables in two databases
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(f"{p}cat_book")))
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(f"{p}cat_book"), sql.Identifier(f"{p}cat"))
        )
    with psycopg.connect(other_db_dsn(extra_db), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(f"{p}cat_notes")))
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(f"{p}cat_notes"), sql.Identifier(f"{p}cat"))
        )
    cat_dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={p}cat"
    cat_session = psycopg.connect(cat_dsn, autocommit=True)
    assert not s.plan(now=leave_at - timedelta(minutes=1)).has_changes, "nothing happens before the instant"
    plan = s.apply(now=leave_at)
    cat_changes = [c.kind for c in plan.changes if c.role == f"{p}cat"]
    assert cat_changes == [
        ChangeKind.ALTER_ROLE,
        ChangeKind.TERMINATE_SESSIONS,
        ChangeKind.REVOKE_MEMBERSHIP,
        ChangeKind.REVOKE_MEMBERSHIP,
    ]
    assert access(p)[f"{p}cat"] == (False, frozenset())
    with pytest.raises(psycopg.OperationalError):
        cat_session.execute("SELECT 1")
    cat_session.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cat_dsn, connect_timeout=5).close()
    empty_after(s, leave_at)

    # day 6: dan is renamed daniel (same entryUUID); bob is terminated
    with ldap_ou.server.admin() as conn:
        assert conn.modify_dn(ldap_ou.user_dn("dan"), "uid=daniel")
    ldap_ou.modify(bob, hrStatus="terminated")
    plan = s.apply(now=day(6))
    assert (ChangeKind.RENAME_ROLE, f"{p}daniel") in {(c.kind, c.role) for c in plan.changes}
    now = access(p)
    assert f"{p}dan" not in now
    assert now[f"{p}daniel"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    assert now[f"{p}bob"] == (False, frozenset())
    empty_after(s, day(6))

    # day 7: bob is rehired: the same role comes back
    ldap_ou.modify(bob, hrStatus="active")
    plan = s.apply(now=day(7))
    assert any(r.rule == "lifecycle:rehire" for c in plan.changes for r in c.reasons)
    assert access(p)[f"{p}bob"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    empty_after(s, day(7))

    # day 20: cat is still kept (disabled, marked) within the retention
    empty_after(s, day(20))
    assert f"{p}cat" in access(p)

    # day 36 18:00: retention of 30 days has passed: dropped, objects reassigned in both databases
    plan = s.apply(now=day(36, 18))
    assert [(c.kind, c.role, c.param("reassign_to")) for c in plan.changes] == [(ChangeKind.DROP_ROLE, f"{p}cat", heir)]
    assert f"{p}cat" not in access(p)
    assert owner(pg.admin_dsn(), f"{p}cat_book") == heir
    assert owner(other_db_dsn(extra_db), f"{p}cat_notes") == heir
    with pg.admin_connect() as conn:
        member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (s.login, heir)).fetchone()
    assert member == (False,), "the provisioner gave back the heir membership it took"
    assert any(c["kind"] == "drop_role" for c in applied_changes(s))
    empty_after(s, day(36, 18))
