"""PostgresTarget against a real PostgreSQL (never skipped)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.config import PostgresTargetConfig
from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import Marker, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, make_change
from provisioner.errors import ApplyFailed, TargetUnavailable
from provisioner.targets.base import RoleRows, lock_key
from provisioner.targets.factory import build_target
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg

Conn = psycopg.Connection[Any]
WHY = (Reason("test", "integration test"),)


def change(kind: ChangeKind, role: str, **params: Any) -> Change:
    return make_change(kind, role, WHY, **params)


def create(role: str, *, kind: str = "user", login: bool = True, until: str | None = None) -> Change:
    marker = {"kind": kind, "id": f"id-{role}", "source": "ldap"}
    return change(
        ChangeKind.CREATE_ROLE, role, role_kind=kind, login=login, valid_until=until, marker=marker
    )


def grant(role: str, group: str) -> Change:
    return change(ChangeKind.GRANT_MEMBERSHIP, role, group=group)


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def run(conn: Conn, template: str, *names: str) -> None:
    conn.execute(sql.SQL(template).format(*(ident(n) for n in names)))


def catalog(conn: Conn, role: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT rolcanlogin, nullif(rolvaliduntil, 'infinity'), shobj_description(oid, 'pg_authid'),"
        " rolsuper, rolcreaterole, rolinherit FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        return None
    keys = ("login", "valid_until", "comment", "superuser", "createrole", "inherit")
    return dict(zip(keys, row, strict=True))


def groups_of(conn: Conn, role: str) -> set[str]:
    rows = conn.execute(
        "SELECT g.rolname FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member"
        " JOIN pg_roles g ON g.oid = am.roleid WHERE m.rolname = %s",
        (role,),
    ).fetchall()
    return {r[0] for r in rows}


# --------------------------------------------------------------------------- inspect


def test_inspect_reads_options_markers_and_memberships(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    grp, u1, u2 = f"{role_prefix}grp", f"{role_prefix}u1", f"{role_prefix}u2"
    run(pg_admin, "CREATE ROLE {} NOLOGIN", grp)
    run(pg_admin, "CREATE ROLE {} LOGIN CREATEDB VALID UNTIL '2031-02-03 04:05:06+00'", u1)
    run(pg_admin, "CREATE ROLE {} NOLOGIN REPLICATION BYPASSRLS CREATEROLE VALID UNTIL 'infinity'", u2)
    marker = Marker(RoleKind.USER, "uuid-1", "ldap")
    pg_admin.execute(
        sql.SQL("COMMENT ON ROLE {} IS {}").format(ident(u1), sql.Literal(marker_codec.encode(marker)))
    )
    run(pg_admin, "COMMENT ON ROLE {} IS 'made by hand'", u2)
    run(pg_admin, "GRANT {} TO {}", grp, u1)
    run(pg_admin, "GRANT {} TO {}", grp, u2)

    state = pg_target.inspect()

    r1, r2, g = state.roles[u1], state.roles[u2], state.roles[grp]
    assert (r1.login, r1.createdb, r1.replication, r1.superuser) == (True, True, False, False)
    assert r1.valid_until == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert r1.marker == marker and r1.managed
    assert r1.member_of == frozenset({grp})
    assert (r2.login, r2.replication, r2.bypassrls, r2.createrole) == (False, True, True, True)
    assert r2.valid_until is None  # infinity
    assert r2.marker is None  # a comment without the prefix is not a marker
    assert r2.member_of == frozenset({grp})
    assert g.member_of == frozenset() and not g.system
    assert state.roles["postgres"].system and state.roles["postgres"].superuser
    assert all(r.system for n, r in state.roles.items() if n.startswith("pg_"))
    assert state.session_role == "postgres"
    assert state.target == pg_target.name
    assert state.server_version[:2].isdigit()


def test_inspect_shares_equal_membership_sets_and_ledgers(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    """A warm daemon keeps every role of the cluster: people with the same groups hold one set,
    and a ledger equal to it is that set (docs/performance.md, session 9)."""
    desk, readers = f"{role_prefix}desk", f"{role_prefix}readers"
    people = [f"{role_prefix}u{i}" for i in range(3)]
    for group in (desk, readers):
        run(pg_admin, "CREATE ROLE {} NOLOGIN", group)
    for i, person in enumerate(people):
        run(pg_admin, "CREATE ROLE {} LOGIN", person)
        run(pg_admin, "GRANT {} TO {}", desk, person)
        run(pg_admin, "GRANT {} TO {}", readers, person)
        marker = Marker(RoleKind.USER, f"uuid-{i}", "ldap", "inst-a", frozenset({desk, readers}))
        pg_admin.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(ident(person), sql.Literal(marker_codec.encode(marker)))
        )

    for state in (pg_target.inspect(), pg_target.inspect(frozenset(people))):
        roles = [state.roles[p] for p in people]
        assert roles[0].member_of == frozenset({desk, readers})
        assert all(r.member_of is roles[0].member_of for r in roles)
        assert all(r.marker is not None and r.marker.granted is roles[0].member_of for r in roles)
        sources = {id(r.marker.source) for r in roles if r.marker is not None}
        assert len(sources) == 1 and roles[0].marker is not None and roles[0].marker.stable_id == "uuid-0"


def _create_roles(conn: Conn, names: list[str]) -> None:
    statements = [sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(n)) for n in names]
    conn.execute(sql.SQL("; ").join(statements))


def test_inspect_of_named_roles_reads_just_those_with_their_memberships(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    grp, u1, u2 = f"{role_prefix}grp", f"{role_prefix}u1", f"{role_prefix}u'2"
    run(pg_admin, "CREATE ROLE {} NOLOGIN", grp)
    run(pg_admin, "CREATE ROLE {} LOGIN VALID UNTIL '2031-02-03 04:05:06+00'", u1)
    run(pg_admin, "CREATE ROLE {} LOGIN", u2)
    run(pg_admin, "GRANT {} TO {}", grp, u1)
    run(pg_admin, "GRANT {} TO {}", grp, u2)
    pg_admin.commit()
    whole = pg_target.inspect()

    named = pg_target.inspect(frozenset({u1, u2, f"{role_prefix}absent"}))

    assert set(named.roles) == {u1, u2}  # not the group, not any other role of the cluster
    assert named.roles[u1] == whole.roles[u1] and named.roles[u2] == whole.roles[u2]
    assert named.roles[u2].member_of == frozenset({grp})
    assert named.session_role == whole.session_role and isinstance(named.sessions, dict)
    statements = pg_target.statements_executed
    sessions_only = pg_target.inspect(frozenset())
    assert sessions_only.roles == {} and isinstance(sessions_only.sessions, dict)
    assert pg_target.statements_executed - statements == 2  # session facts and sessions: no role query


def test_inspect_uses_the_same_number_of_statements_for_10_and_500_roles(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    grp = f"{role_prefix}g"
    _create_roles(pg_admin, [grp, *(f"{role_prefix}r{i}" for i in range(10))])
    run(pg_admin, "GRANT {} TO {}", grp, f"{role_prefix}r0")
    before = pg_target.statements_executed
    small = pg_target.inspect()
    per_small = pg_target.statements_executed - before

    _create_roles(pg_admin, [f"{role_prefix}r{i}" for i in range(10, 500)])
    for i in range(1, 500):
        run(pg_admin, "GRANT {} TO {}", grp, f"{role_prefix}r{i}")
    before = pg_target.statements_executed
    large = pg_target.inspect()
    per_large = pg_target.statements_executed - before

    assert sum(n.startswith(role_prefix) for n in small.roles) == 11
    assert sum(n.startswith(role_prefix) for n in large.roles) == 501
    assert sum(grp in r.member_of for r in large.roles.values()) == 500
    assert per_small == per_large == 4  # session, roles, memberships, sessions per role


# --------------------------------------------------------------------------- apply


def test_apply_creates_grants_alters_revokes_renames_and_drops(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    g1, g2, u = f"{role_prefix}g1", f"{role_prefix}g2", f"{role_prefix}alice"
    seen: list[Change] = []
    first = [
        create(g1, kind="group", login=False),
        create(g2, kind="group", login=False),
        create(u, until="2030-06-01T12:00:00+00:00"),
        grant(u, g1),
        grant(u, g2),
    ]
    result = pg_target.apply(first, on_change=seen.append)
    assert result.applied == tuple(first) and seen == first
    assert result.statements >= 8  # 3 x (CREATE + COMMENT) + 2 GRANT
    row = catalog(pg_admin, u)
    assert row is not None and row["login"] and row["inherit"]
    assert not row["superuser"] and not row["createrole"]
    assert row["valid_until"] == datetime(2030, 6, 1, 12, tzinfo=UTC)
    assert marker_codec.parse(row["comment"]) == Marker(RoleKind.USER, f"id-{u}", "ldap")
    assert catalog(pg_admin, g1)["login"] is False  # type: ignore[index]
    assert groups_of(pg_admin, u) == {g1, g2}

    u2 = f"{role_prefix}alice2"
    pg_target.apply([
        change(ChangeKind.RENAME_ROLE, u2, old_name=u),
        change(ChangeKind.ALTER_ROLE, u2, login=False, valid_until=None),
        change(ChangeKind.TERMINATE_SESSIONS, u2),
        change(ChangeKind.REVOKE_MEMBERSHIP, u2, group=g1),
        change(ChangeKind.SET_MARKER, u2, marker=None),
    ])
    assert catalog(pg_admin, u) is None
    row = catalog(pg_admin, u2)
    assert row is not None and row["login"] is False and row["comment"] is None
    assert row["valid_until"] is None
    assert pg_admin.execute(
        "SELECT rolvaliduntil = 'infinity' FROM pg_roles WHERE rolname = %s", (u2,)
    ).fetchone() == (True,)
    assert groups_of(pg_admin, u2) == {g2}

    pg_target.apply([change(ChangeKind.ALTER_ROLE, u2, login=True, valid_until="2029-01-01T00:00:00Z")])
    row = catalog(pg_admin, u2)
    assert row is not None and row["login"] is True
    assert row["valid_until"] == datetime(2029, 1, 1, tzinfo=UTC)

    pg_target.apply([change(ChangeKind.SET_MARKER, u2, marker={"kind": "user", "id": "x", "source": "s"})])
    assert marker_codec.parse(catalog(pg_admin, u2)["comment"]) == Marker(  # type: ignore[index]
        RoleKind.USER, "x", "s"
    )

    heir = f"{role_prefix}heir"
    table = f"{role_prefix}owned"
    run(pg_admin, "CREATE ROLE {}", heir)
    run(pg_admin, "CREATE TABLE {} (id int)", table)
    run(pg_admin, "ALTER TABLE {} OWNER TO {}", table, u2)
    pg_target.apply([change(ChangeKind.DROP_ROLE, u2, reassign_to=heir)])
    assert catalog(pg_admin, u2) is None
    owner = pg_admin.execute(
        "SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)
    ).fetchone()
    assert owner == (heir,)
    assert catalog(pg_admin, g1) is not None and catalog(pg_admin, g2) is not None


def test_on_change_runs_after_commit(pg_target: PostgresTarget, pg_dsn: str, role_prefix: str) -> None:
    visible: dict[str, bool] = {}

    def audit(c: Change) -> None:
        with pg.admin_connect(pg_dsn) as other:
            visible[c.role] = catalog(other, c.role) is not None

    names = [f"{role_prefix}a", f"{role_prefix}b"]
    pg_target.apply([create(n) for n in names], on_change=audit)
    assert visible == {n: True for n in names}


def test_hostile_role_names_are_quoted(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    user = f"{role_prefix}x\"; DROP ROLE postgres; -- it's"
    group = f"{role_prefix}g'); DROP TABLE x; --\""
    pg_target.apply([create(group, kind="group", login=False), create(user), grant(user, group)])
    state = pg_target.inspect()
    assert state.roles[user].marker == Marker(RoleKind.USER, f"id-{user}", "ldap")
    assert state.roles[user].member_of == frozenset({group})
    assert pg.roles_with_prefix(pg_admin, role_prefix) == sorted([user, group])
    assert groups_of(pg_admin, user) == {group}

    pg_target.apply([
        change(ChangeKind.TERMINATE_SESSIONS, user),
        change(ChangeKind.REVOKE_MEMBERSHIP, user, group=group),
        change(ChangeKind.DROP_ROLE, user),
        change(ChangeKind.DROP_ROLE, group),
    ])
    assert pg.roles_with_prefix(pg_admin, role_prefix) == []
    assert catalog(pg_admin, "postgres")["superuser"] is True  # type: ignore[index]


@pytest.mark.parametrize("batch_size", [500, 2])
def test_failing_change_is_isolated_and_named(
    pg_admin: Conn, role_prefix: str, pg_target_config: PostgresTargetConfig, batch_size: int
) -> None:
    """A change the server refuses is rolled back alone (its own savepoint) and
    returned with the server's message; the others commit (issue 14)."""
    bad = grant(f"{role_prefix}a", f"{role_prefix}missing")
    changes = [
        create(f"{role_prefix}a"),
        create(f"{role_prefix}b"),
        create(f"{role_prefix}c"),
        bad,
        create(f"{role_prefix}d"),
    ]
    target = PostgresTarget(pg_target_config, batch_size=batch_size)
    called: list[Change] = []
    try:
        result = target.apply(changes, on_change=called.append)
        assert [(f.change, "does not exist" in f.error) for f in result.failed] == [(bad, True)]
        assert bad.describe() in result.failed[0].describe()
        good = [c for c in changes if c is not bad]
        assert list(result.applied) == good and called == good
        assert pg.roles_with_prefix(pg_admin, role_prefix) == [f"{role_prefix}{n}" for n in "abcd"]
        target.apply([create(f"{role_prefix}e")])  # the session is usable again
        assert f"{role_prefix}e" in pg.roles_with_prefix(pg_admin, role_prefix)
    finally:
        target.close()


def test_unsupported_change_is_refused_and_the_rest_applies(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    odd = change(ChangeKind.GRANT_PRIVILEGE, f"{role_prefix}a", privilege="SELECT")
    result = pg_target.apply([create(f"{role_prefix}a"), odd])
    assert [f.change for f in result.failed] == [odd] and "cannot be applied" in result.failed[0].error
    assert pg.roles_with_prefix(pg_admin, role_prefix) == [f"{role_prefix}a"]


def _wait_for_blocked_backend(conn: Conn, blocker_pid: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (blocker_pid,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("the applier never blocked on the test's lock")


def test_connection_killed_mid_apply_leaves_target_unchanged(
    pg_target: PostgresTarget, pg_admin: Conn, pg_dsn: str, role_prefix: str
) -> None:
    victim, table = f"{role_prefix}victim", f"{role_prefix}locked"
    run(pg_admin, "CREATE ROLE {}", victim)
    run(pg_admin, "CREATE TABLE {} (id int)", table)
    run(pg_admin, "ALTER TABLE {} OWNER TO {}", table, victim)
    changes = [create(f"{role_prefix}a"), create(f"{role_prefix}b"), change(ChangeKind.DROP_ROLE, victim)]
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            pg_target.apply(changes)
        except BaseException as exc:
            errors.append(exc)

    with pg.admin_connect(pg_dsn) as locker, locker.transaction():
        run(locker, "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", table)
        worker = threading.Thread(target=apply)
        worker.start()
        blocked = _wait_for_blocked_backend(pg_admin, locker.info.backend_pid)
        pg_admin.execute("SELECT pg_terminate_backend(%s)", (blocked,))
        worker.join(30)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ApplyFailed), errors
    assert "connection lost" in str(errors[0])
    assert pg.roles_with_prefix(pg_admin, role_prefix) == [victim]
    assert pg_admin.execute(
        "SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)
    ).fetchone() == (victim,)
    pg_target.apply([create(f"{role_prefix}a")])  # reconnects
    assert pg.roles_with_prefix(pg_admin, role_prefix) == [f"{role_prefix}a", victim]


def test_appliers_of_one_target_serialise_on_the_advisory_lock(
    pg_target: PostgresTarget, pg_dsn: str, pg_admin: Conn, role_prefix: str
) -> None:
    done = threading.Event()

    def apply() -> None:
        pg_target.apply([create(f"{role_prefix}a")])
        done.set()

    with pg.admin_connect(pg_dsn) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("apply", pg_target.name),))
        worker = threading.Thread(target=apply)
        worker.start()
        assert not done.wait(1.0)  # blocked behind the other applier
        assert pg.roles_with_prefix(pg_admin, role_prefix) == []
    worker.join(30)
    assert done.is_set()
    assert pg.roles_with_prefix(pg_admin, role_prefix) == [f"{role_prefix}a"]


# --------------------------------------------------------------------------- PostgreSQL 16


def test_pg16_revoke_removes_the_membership_from_every_grantor(pg16_dsn: str) -> None:
    with pg.role_prefix_scope(pg16_dsn) as prefix, pg.admin_connect(pg16_dsn) as admin:
        g, u, boss = f"{prefix}g", f"{prefix}u", f"{prefix}boss"
        run(admin, "CREATE ROLE {}", g)
        run(admin, "CREATE ROLE {}", u)
        run(admin, "CREATE ROLE {} CREATEROLE", boss)
        run(admin, "GRANT {} TO {} WITH ADMIN OPTION", g, boss)
        run(admin, "GRANT {} TO {}", g, u)
        run(admin, "SET ROLE {}", boss)
        run(admin, "GRANT {} TO {}", g, u)
        admin.execute("RESET ROLE")
        grants = admin.execute(
            "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole", (u,)
        ).fetchone()
        assert grants == (2,)  # one row per grantor on 16

        target = PostgresTarget(pg.target_config(dsn=pg16_dsn))
        try:
            assert target.inspect().roles[u].member_of == frozenset({g})
            assert target.inspect(frozenset({u})).roles[u].member_of == frozenset({g})  # the read-back's query
            kept: RoleRows = {}  # the warm daemon's read: the digest and the keys with two grantor rows
            digest, state = target.inspect_if_moved(None, kept)
            assert state is not None and state.roles[u].member_of == frozenset({g})
            assert digest == target.catalog_digest() and target.inspect_if_moved(digest, kept) == (digest, None)
            target.inspect(frozenset({u}), kept)  # the read-back keys the role as the whole read does
            assert target.inspect(reuse=kept).roles[u] is kept[u][1]
            target.apply([change(ChangeKind.REVOKE_MEMBERSHIP, u, group=g)])
            assert groups_of(admin, u) == set()
            assert target.inspect().roles[u].member_of == frozenset()
            moved, state = target.inspect_if_moved(digest, kept)
            assert moved != digest and state is not None and state.roles[u].member_of == frozenset()
        finally:
            target.close()


# --------------------------------------------------------------------------- connection


def test_unreachable_server_raises_target_unavailable_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_SECRET_PW", "s3cret-value")
    cfg = pg.target_config(
        dsn="host=127.0.0.1 port=1 user=postgres dbname=test",
        password="env:PROVISIONER_TEST_SECRET_PW",
        connect_timeout=2,
    )
    target = build_target(cfg)
    with pytest.raises(TargetUnavailable) as info:
        target.inspect()
    assert "host=127.0.0.1 port=1" in str(info.value)
    assert "s3cret-value" not in str(info.value)


def test_embedded_pgserver_starts_and_inspects(tmp_path: Path) -> None:
    from pgserver.postgres_server import get_server

    tmp_path.chmod(0o755)
    data_dir = tmp_path / "pgdata"
    cfg = pg.target_config(embedded=True, data_dir=str(data_dir), dsn=None)
    target = build_target(cfg)
    user = f"{pg.new_prefix()}embedded"
    try:
        assert isinstance(target, PostgresTarget)
        target.apply([create(user)])
        state = target.inspect()
        assert state.session_role == "postgres"
        assert state.server_version.startswith("16")
        assert state.roles[user].marker is not None
        assert (data_dir / "PG_VERSION").exists()
    finally:
        target.close()
        get_server(data_dir).cleanup()


def test_every_leavers_session_is_ended_and_the_pass_after_commit_is_one_round_trip(
    pg_target: PostgresTarget, pg_admin: Conn, role_prefix: str
) -> None:
    """Leavers' sessions are ended in the apply's transaction and once more after COMMIT (a
    session that reconnected in between); that second pass sends every leaver's termination
    in one pipeline, so 500 leavers cost one round trip, not 500 (issue 19)."""
    leavers = [f"{role_prefix}ann", f"{role_prefix}bob", f"{role_prefix}cy"]
    pg_target.apply([create(name) for name in leavers])
    sessions = [psycopg.connect(pg.admin_dsn(), user=name, autocommit=True) for name in leavers]
    try:
        sent: list[psycopg.pq.PipelineStatus] = []  # the connection's pipeline mode at each send
        conn = pg_target.connection()
        original = conn.execute

        def spy(query: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(query, bytes) and b"pg_terminate_backend" in query:
                sent.append(conn.pgconn.pipeline_status)
            return original(query, *args, **kwargs)

        conn.execute = spy  # type: ignore[method-assign]
        try:
            pg_target._terminate_again([change(ChangeKind.TERMINATE_SESSIONS, name) for name in leavers])
        finally:
            del conn.execute
        assert sent == [psycopg.pq.PipelineStatus.ON] * 3, "queued in one pipeline, sent at its one sync"
        open_now = pg_admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY(%s)", (leavers,)
        ).fetchone()
        assert open_now == (0,)
        for session in sessions:
            with pytest.raises(psycopg.OperationalError):
                session.execute("SELECT 1")
    finally:
        for session in sessions:
            session.close()
