"""The MariaDB target through the real pipeline: LDIF source, rules, plan,
apply, verify, as the least-privilege account of docs/mysql.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest

from provisioner.core.values.plan import ChangeKind
from provisioner.errors import ApplyFailed
from tests.mysql.support import MysqlSetup, Person, make_mysql_setup
from tests.support import mysql as M


@pytest.fixture
def env(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> MysqlSetup:
    return make_mysql_setup(tmp_path, mysql_prefix, mysql_login)


def _meta(login: M.Login, name: str) -> tuple[Any, ...] | None:
    with M.admin_connect() as conn:
        rows = M.q(
            conn,
            f"SELECT kind, stable_id, valid_until FROM {M.ident(login.meta_database)}.managed_roles"
            " WHERE name = %s AND host = '%'",
            (name,),
        )
    return rows[0] if rows else None


def test_apply_creates_users_roles_and_grants_then_plan_is_empty(env: MysqlSetup, mysql_login: M.Login) -> None:
    p = env.prefix
    env.people(Person("alice", "Trading", leave_date="2099-01-01"), Person("bob", "Operations"))
    plan = env.setup.apply()
    kinds = {c.kind for c in plan.changes}
    assert kinds == {ChangeKind.CREATE_ROLE, ChangeKind.GRANT_MEMBERSHIP}
    assert M.role_grants(p) == {
        f"{p}alice": {f"{p}trader", f"{p}reader"},
        f"{p}bob": {f"{p}ops", f"{p}reader"},
    }
    assert M.locked(f"{p}alice") is False
    assert M.locked(f"{p}reader", "") is not None  # a MariaDB role (host '')
    marker = _meta(mysql_login, f"{p}alice")
    assert marker is not None and marker[0] == "user" and marker[2] is None
    again = env.setup.plan()
    assert again.changes == ()
    # MariaDB cannot expire an account: the leave date is a notice, never a change
    codes = {(n.code, n.role) for n in again.targets[0].notices}
    assert ("scheduled_disable", f"{p}alice") in codes


def test_joiner_mover_leaver_over_three_syncs(env: MysqlSetup, mysql_login: M.Login) -> None:
    p = env.prefix
    env.people(Person("alice", "Trading"), Person("bob", "Operations"))
    env.setup.apply()

    env.people(Person("alice", "Operations"), Person("bob", "Operations"), Person("carol", "Trading"))
    mover = env.setup.apply()
    assert {(c.kind, c.role, c.param("group")) for c in mover.changes if c.role == f"{p}alice"} == {
        (ChangeKind.REVOKE_MEMBERSHIP, f"{p}alice", f"{p}trader"),
        (ChangeKind.GRANT_MEMBERSHIP, f"{p}alice", f"{p}ops"),
    }
    assert M.role_grants(p)[f"{p}alice"] == {f"{p}ops", f"{p}reader"}
    assert M.role_grants(p)[f"{p}carol"] == {f"{p}trader", f"{p}reader"}

    M.set_password(f"{p}bob", "bob-test-password")  # test only, so that bob can log in
    session = M.connect_as(f"{p}bob", "bob-test-password")
    try:
        assert M.q(session, "SELECT 1") == [(1,)]
        env.people(
            Person("alice", "Operations"), Person("bob", "Operations", status="terminated"), Person("carol", "Trading")
        )
        leaver = env.setup.apply()
        bob = [c for c in leaver.changes if c.role == f"{p}bob"]
        assert [c.kind for c in bob] == [
            ChangeKind.ALTER_ROLE,
            ChangeKind.TERMINATE_SESSIONS,
            ChangeKind.REVOKE_MEMBERSHIP,
            ChangeKind.REVOKE_MEMBERSHIP,
        ]
        with pytest.raises(pymysql.err.OperationalError):
            M.q(session, "SELECT 1")
    finally:
        session.close()
    assert M.locked(f"{p}bob") is True
    assert f"{p}bob" not in M.role_grants(p)
    with pytest.raises(pymysql.err.OperationalError):
        M.connect_as(f"{p}bob", "bob-test-password").close()
    marker = _meta(mysql_login, f"{p}bob")
    assert marker is not None and marker[0] == "user" and marker[2] is not None  # kept, disable instant
    assert M.locked(f"{p}alice") is False and M.locked(f"{p}carol") is False
    assert env.setup.plan().changes == ()  # the leaver converged: no endless diff


def test_unmanaged_and_protected_accounts_untouched(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_mysql_setup(tmp_path, p, mysql_login, protected=[f"{p}hank"])
    for name in ("gina", "hank", "ivan"):
        M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, p + name)}")
    M.q(mysql_admin, f"GRANT SUPER ON *.* TO {M.account(mysql_admin, p + 'ivan')}")  # privileged: protected
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, p + 'other')}")  # not in the directory at all
    env.people(
        Person("gina", "Trading"), Person("hank", "Trading"), Person("ivan", "Trading"), Person("jill", "Trading")
    )
    plan = env.setup.apply()
    touched = {c.role for c in plan.changes}
    assert not touched & {f"{p}gina", f"{p}hank", f"{p}ivan", f"{p}other"}
    notices = {(n.code, n.role) for n in plan.targets[0].notices}
    assert ("unmanaged", f"{p}gina") in notices
    assert ("protected", f"{p}hank") in notices and ("protected", f"{p}ivan") in notices
    grants = M.role_grants(p)
    assert grants.get(f"{p}jill") == {f"{p}trader", f"{p}reader"}
    for name in ("gina", "hank", "ivan", "other"):
        assert f"{p}{name}" not in grants and M.locked(p + name) is False
        assert _meta(mysql_login, p + name) is None
    env.people(Person("jill", "Trading"))  # gina, hank, ivan vanish: still nobody touches them
    assert {c.role for c in env.setup.apply().changes} <= {f"{p}jill"}
    assert all(M.locked(p + n) is False for n in ("gina", "hank", "ivan", "other"))


def test_failing_change_mid_apply_names_it_and_next_run_converges(
    env: MysqlSetup, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = env.prefix
    M.q(mysql_admin, f"CREATE ROLE {M.ident(p + 'foreign')}")  # the provisioner holds no ADMIN OPTION on it
    env.people(Person("alice", "Trading", title="Auditor"), Person("bob", "Operations"))
    with pytest.raises(ApplyFailed) as failed:
        env.setup.apply()
    message = str(failed.value)
    assert message.startswith("1 change(s) did not happen")  # isolated: everything else applied
    assert f"grant {p}foreign to {p}alice" in message
    assert M.locked(f"{p}alice") is False and M.locked(f"{p}bob") is False
    assert _meta(mysql_login, f"{p}alice") is not None  # every created account is marked
    assert M.role_grants(p) == {f"{p}alice": {f"{p}trader", f"{p}reader"}, f"{p}bob": {f"{p}ops", f"{p}reader"}}

    # the documented remedy: hand the provisioner ADMIN OPTION on the existing role
    M.q(mysql_admin, f"GRANT {M.ident(p + 'foreign')} TO {M.account(mysql_admin, mysql_login.user)} WITH ADMIN OPTION")
    rest = env.setup.apply()
    assert [c.describe() for c in rest.changes] == [f"grant {p}foreign to {p}alice"]  # only what was left
    assert M.role_grants(p) == {
        f"{p}alice": {f"{p}trader", f"{p}reader", f"{p}foreign"},
        f"{p}bob": {f"{p}ops", f"{p}reader"},
    }
    assert env.setup.plan().changes == ()


def test_odd_role_name_round_trips(env: MysqlSetup) -> None:
    p = env.prefix
    odd = f"{p}odd `desk`'; DROP USER root; --"
    env.people(Person("o'brien", "Research", title="Odd Desk"))
    env.setup.apply()
    assert M.role_grants(p) == {f"{p}o_brien": {odd}}  # naming sanitises the user name, not the role
    assert M.locked(odd, "") is not None and M.locked("root", "localhost") is False
    assert env.setup.plan(now=datetime.now(UTC)).changes == ()


def test_leaver_dropped_after_retention(env: MysqlSetup, mysql_login: M.Login) -> None:
    p = env.prefix
    env.people(Person("alice", "Trading"), Person("bob", "Operations"))
    env.setup.apply()
    env.people(Person("alice", "Trading"))  # bob vanished from the directory: a leaver
    disabled = env.setup.apply()
    assert {c.kind for c in disabled.changes if c.role == f"{p}bob"} >= {ChangeKind.ALTER_ROLE}
    assert M.locked(f"{p}bob") is True
    later = datetime.now(UTC) + timedelta(days=31)
    assert env.setup.plan(now=datetime.now(UTC) + timedelta(days=29)).changes == ()  # within the retention
    dropped = env.setup.apply(now=later)
    assert [(c.kind, c.role) for c in dropped.changes] == [(ChangeKind.DROP_ROLE, f"{p}bob")]
    assert M.locked(f"{p}bob") is None and _meta(mysql_login, f"{p}bob") is None
    assert env.setup.plan(now=later).changes == ()


def test_a_person_named_like_a_group_role_gets_no_account_beside_it(env: MysqlSetup) -> None:
    """E2E finding: uid ``reader`` maps to the name of the group role the rules grant
    (``{p}reader``).  The plan created both -- the role for alice and an account for
    the person -- and MariaDB, where a role and an account may share a name, made both.
    provisioner then saw the account only as ``reader@%``: every later statement on it
    failed (``ALTER USER ... 'reader@%'@'%'``), so when the person left, the account
    stayed unlocked with its roles.  Such an identity is refused at plan time, as on
    PostgreSQL a name an existing group role holds is."""
    p = env.prefix
    env.people(Person("alice", "Trading"), Person("reader", "Operations"))
    plan = env.setup.plan()
    creates = [c for c in plan.changes if c.kind is ChangeKind.CREATE_ROLE and c.role == f"{p}reader"]
    assert [c.param("role_kind") for c in creates] == ["group"], [c.describe() for c in creates]
    errors = [n.message for t in plan.targets for n in t.notices if n.role == f"{p}reader" and n.level.value == "error"]
    assert any("'reader'" in m and "group role" in m for m in errors), errors
    env.setup.apply()
    assert M.locked(f"{p}reader") is None, "an account was made beside the group role"
    assert M.role_grants(p)[f"{p}alice"] == {f"{p}trader", f"{p}reader"}
