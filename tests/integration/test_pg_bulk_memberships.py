"""Multi-member GRANT / REVOKE statements against a real PostgreSQL (brownfield:
one of the group roles is a DBA's, made before provisioner ran)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.config import PostgresTargetConfig
from provisioner.core.values.model import Reason
from provisioner.core.values.plan import Change, ChangeKind, execution_order, make_change
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg

Conn = psycopg.Connection[Any]
WHY = (Reason("test", "bulk membership test"),)


def _create(role: str, kind: str = "user") -> Change:
    marker = {"kind": kind, "id": f"id-{role}", "source": "ldap"}
    return make_change(
        ChangeKind.CREATE_ROLE, role, WHY, role_kind=kind, login=kind == "user", valid_until=None, marker=marker
    )


def _member(kind: ChangeKind, role: str, group: str) -> Change:
    return make_change(kind, role, WHY, group=group)


def _memberships(conn: Conn, prefix: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        "SELECT m.rolname, g.rolname FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member"
        " JOIN pg_roles g ON g.oid = am.roleid WHERE m.rolname LIKE %s",
        (prefix + "%",),
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


def test_memberships_go_in_multi_member_statements(
    pg_admin: Conn, role_prefix: str, pg_target_config: PostgresTargetConfig
) -> None:
    p = role_prefix
    pg_admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}dba_reports")))  # the DBA's
    groups = [f"{p}readers", f"{p}grp_algo", f"{p}dba_reports"]
    users = [f"{p}u{i:03d}" for i in range(200)]
    changes = [_create(f"{p}readers", "group"), _create(f"{p}grp_algo", "group")]
    changes += [_create(u) for u in users]
    changes += [_member(ChangeKind.GRANT_MEMBERSHIP, u, g) for u in users for g in groups]
    target = PostgresTarget(pg_target_config, batch_size=500)
    applied: list[Change] = []
    try:
        result = target.apply(execution_order(changes), on_change=applied.append)
        assert _memberships(pg_admin, f"{p}u") == {(u, g) for u in users for g in groups}
        # 202 CREATE + 202 COMMENT + the lock; 600 memberships in a handful of statements, not 600
        assert result.statements <= 202 * 2 + 1 + 12, result.statements
        assert len(applied) == len(changes), "every change is reported (and audited) on its own"

        revokes = [_member(ChangeKind.REVOKE_MEMBERSHIP, u, g) for u in users[:150] for g in groups[:2]]
        result = target.apply(execution_order(revokes))
        assert result.statements <= 1 + 4, result.statements
        assert _memberships(pg_admin, f"{p}u") == {
            (u, g) for u in users for g in groups if u not in users[:150] or g == f"{p}dba_reports"
        }
    finally:
        target.close()


@pytest.mark.parametrize("batch_size", [1, 500])
def test_a_failing_member_of_a_merged_statement_is_named_and_isolated(
    pg_admin: Conn, role_prefix: str, pg_target_config: PostgresTargetConfig, batch_size: int
) -> None:
    """The merged GRANT fails as a whole; the replay pins the refusal on the one
    bad member (named with the server's message) and every other change applies."""
    p = role_prefix
    users = [f"{p}u{i:02d}" for i in range(40)]
    bad = _member(ChangeKind.GRANT_MEMBERSHIP, f"{p}u20_missing", f"{p}readers")  # no such member role
    changes = [_create(f"{p}readers", "group"), *(_create(u) for u in users)]
    changes += [_member(ChangeKind.GRANT_MEMBERSHIP, u, f"{p}readers") for u in users] + [bad]
    target = PostgresTarget(pg_target_config, batch_size=batch_size)
    called: list[Change] = []
    try:
        result = target.apply(execution_order(changes), on_change=called.append)
        assert [f.change for f in result.failed] == [bad]
        (failure,) = result.failed
        assert bad.describe() in failure.describe() and "does not exist" in failure.error, failure.describe()
        good = [c for c in changes if c is not bad]
        assert sorted(c.describe() for c in result.applied) == sorted(c.describe() for c in good)
        assert sorted(c.describe() for c in called) == sorted(c.describe() for c in good)
        assert pg.roles_with_prefix(pg_admin, p) == sorted([f"{p}readers", *users])
        assert _memberships(pg_admin, f"{p}u") == {(u, f"{p}readers") for u in users}
    finally:
        target.close()


def _ledgered(role: str, group: str, granted: list[str]) -> Change:
    marker = {"kind": "user", "id": f"id-{role}", "source": "ldap", "granted": granted}
    return make_change(ChangeKind.GRANT_MEMBERSHIP, role, WHY, group=group, marker=marker)


def _ledgers(conn: Conn, prefix: str) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname LIKE %s", (prefix + "%",)
    ).fetchall()
    mark = "provisioner:managed "
    return {r[0]: sorted(json.loads(r[1][len(mark):]).get("granted", [])) for r in rows if r[1]}


@pytest.mark.parametrize("batch_size", [3, 500])
def test_a_refused_grant_in_a_round_trip_of_shared_ledgers_leaves_every_ledger_exact(
    pg_admin: Conn, role_prefix: str, pg_target_config: PostgresTargetConfig, batch_size: int
) -> None:
    """One ledger statement per member and round trip: when the round trip fails (a grant of
    a group role that does not exist), the replay writes each change's own ledger, so every
    member's ledger is exactly what was granted, the refused member's included."""
    p = role_prefix
    users = [f"{p}u{i:02d}" for i in range(40)]
    groups = [f"{p}readers", f"{p}x"]
    changes = [_create(g, "group") for g in groups] + [_create(u) for u in users]
    for u in users:
        changes += [_ledgered(u, groups[0], groups[:1]), _ledgered(u, groups[1], groups)]
    bad = _ledgered(users[20], f"{p}missing", [*groups, f"{p}missing"])  # that member's last change
    target = PostgresTarget(pg_target_config, batch_size=batch_size)
    try:
        result = target.apply([*execution_order(changes), bad])
        assert [f.change for f in result.failed] == [bad]
        assert _memberships(pg_admin, f"{p}u") == {(u, g) for u in users for g in groups}
        assert _ledgers(pg_admin, f"{p}u") == {u: sorted(groups) for u in users}
    finally:
        target.close()


def test_statements_render_to_the_bytes_psycopg_composes() -> None:
    """A Statement rendered with the apply's escaped-name table (each name escaped once) is
    byte for byte the sql.Composed of the same parts, on a real connection."""
    from psycopg.adapt import Transformer

    from provisioner.targets.pg_step import Statement, render

    names = ['x"; DROP ROLE postgres; --', "Ünïcödé rôle", "plain", "UPPER", 'a""b']
    with pg.admin_connect() as conn:
        seen: dict[str, bytes] = {}
        context = Transformer.from_context(conn)
        for name in names * 2:
            ours = Statement(b"GRANT ", name, b" TO ", "member", b" IS ", sql.Literal(name))
            theirs = sql.Composed([sql.SQL("GRANT "), sql.Identifier(name), sql.SQL(" TO "), sql.Identifier("member"),
                                   sql.SQL(" IS "), sql.Literal(name)])
            assert render(ours, seen, context) == theirs.as_bytes(conn) == ours.as_bytes(conn)
        assert set(seen) == {*names, "member"}
