"""The MariaDB target on its own: inspect cost, quoting, failures, config."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import MysqlTargetConfig, PostgresTargetConfig, parse_config
from provisioner.core.reconcile.diff import DiffPolicy, diff
from provisioner.core.values.capabilities import MARIADB, POSTGRESQL
from provisioner.core.values.model import (
    ActualRole,
    ActualState,
    DesiredState,
    DesiredUser,
    Lifecycle,
    Marker,
    Reason,
    RoleKind,
)
from provisioner.core.values.plan import Change, ChangeKind, make_change
from provisioner.errors import ConfigError
from provisioner.targets.factory import build_target
from provisioner.targets.mysql import MysqlTarget
from provisioner.targets.mysql_apply import quote_ident
from tests.support import mysql as M

WHY = [Reason("test", "test")]


def _user(name: str, login: bool = True) -> Change:
    marker = {"kind": "user", "id": name, "source": "s"}
    return make_change(
        ChangeKind.CREATE_ROLE, name, WHY, role_kind="user", login=login, valid_until=None, marker=marker
    )


def _group(name: str) -> Change:
    marker = {"kind": "group", "id": None, "source": None}
    return make_change(
        ChangeKind.CREATE_ROLE, name, WHY, role_kind="group", login=False, valid_until=None, marker=marker
    )


def _grant(user: str, group: str) -> Change:
    return make_change(ChangeKind.GRANT_MEMBERSHIP, user, WHY, group=group)


def test_quote_ident() -> None:
    assert quote_ident("plain") == "`plain`"
    assert quote_ident("a`b") == "`a``b`"
    assert quote_ident("x`; DROP USER root; --'\"") == "`x``; DROP USER root; --'\"`"
    for bad in ("", "nul\x00byte", None, 3):
        with pytest.raises(ValueError):
            quote_ident(bad)


def _seed(admin: Any, prefix: str, n: int) -> None:
    M.q(admin, f"CREATE ROLE {M.ident(prefix + 'seedrole')}")
    for i in range(n):
        name = f"{prefix}seed{i}"
        M.q(admin, f"CREATE USER {M.account(admin, name)}")
        M.q(admin, f"GRANT {M.ident(prefix + 'seedrole')} TO {M.account(admin, name)}")


def test_inspect_query_count_is_constant(
    mysql_admin: Any, mysql_prefix: str, mysql_login: M.Login, mysql_target: MysqlTarget
) -> None:
    _seed(mysql_admin, mysql_prefix, 10)
    before = mysql_target.statements_executed
    small = mysql_target.inspect()
    few = mysql_target.statements_executed - before
    more_prefix = mysql_prefix + "x"
    _seed(mysql_admin, more_prefix, 290)  # carries mysql_prefix: cleaned up with it
    before = mysql_target.statements_executed
    large = mysql_target.inspect()
    many = mysql_target.statements_executed - before
    seeded = [n for n in large.roles if n.startswith(mysql_prefix + "seed") or n.startswith(more_prefix + "seed")]
    assert len(seeded) == 302  # 300 accounts, 2 roles
    assert len(large.roles) >= len(small.roles) + 290
    assert few == many == 5
    assert large.roles[f"{more_prefix}seed7"].member_of == frozenset({more_prefix + "seedrole"})
    assert large.roles[f"{more_prefix}seedrole"].login is False


def test_odd_names_round_trip(mysql_target: MysqlTarget, mysql_prefix: str, mysql_admin: Any) -> None:
    user = f"{mysql_prefix}o'b`r;ian\"--"
    group = f"{mysql_prefix}g`r'p; DROP USER root; --"
    result = mysql_target.apply([_user(user), _group(group), _grant(user, group)])
    assert len(result.applied) == 3
    state = mysql_target.inspect()
    assert state.roles[user].member_of == frozenset({group})
    assert state.roles[user].marker == Marker(RoleKind.USER, user, "s")
    assert state.roles[group].marker == Marker(RoleKind.GROUP)
    assert M.locked("root", "localhost") is False
    names = {str(u) for (u,) in M.q(mysql_admin, "SELECT User FROM mysql.global_priv")}
    assert user in names and group in names


def test_refused_change_is_skipped_and_named(mysql_target: MysqlTarget, mysql_prefix: str) -> None:
    """A change the server refuses is skipped with its message; the others apply (issue 14)."""
    p = mysql_prefix
    applied: list[Change] = []
    changes = [_user(p + "a"), _user(p + "b"), _grant(p + "a", p + "missing"), _user(p + "c")]
    result = mysql_target.apply(changes, on_change=applied.append)
    assert [f.change for f in result.failed] == [changes[2]] and result.failed[0].error
    assert f"grant {p}missing to {p}a" in result.failed[0].describe()
    assert applied == list(result.applied) == [changes[0], changes[1], changes[3]]  # each reported when committed
    state = mysql_target.inspect()
    assert all(state.roles[p + n].managed for n in "abc")


def test_unsupported_change_refused_before_anything_runs(mysql_target: MysqlTarget, mysql_prefix: str) -> None:
    priv = make_change(ChangeKind.GRANT_PRIVILEGE, mysql_prefix + "g", WHY, privileges="SELECT", object="t")
    result = mysql_target.apply([_user(mysql_prefix + "a"), priv])
    assert [f.change for f in result.failed] == [priv]
    assert "cannot be applied: object type '' has no MariaDB equivalent" in result.failed[0].error
    assert mysql_target.inspect().roles[mysql_prefix + "a"].managed


def test_namesake_created_since_the_plan_stays_unmanaged(
    mysql_target: MysqlTarget, mysql_prefix: str, mysql_admin: Any
) -> None:
    name = mysql_prefix + "late"
    mysql_target.inspect()
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, name)}")  # appears between plan and apply
    mysql_target.apply([_group(mysql_prefix + "desk")])
    result = mysql_target.apply([_user(name), _grant(name, mysql_prefix + "desk")])
    assert [f.change.describe() for f in result.failed] == [
        f"create role {name} (user, LOGIN)",
        f"grant {mysql_prefix}desk to {name}",
    ]
    assert result.failed[1].error.startswith("skipped"), "never granted to the namesake"
    state = mysql_target.inspect()
    assert state.roles[name].marker is None  # its marker row was taken back
    assert state.roles[name].member_of == frozenset()


def test_orphan_marker_row_is_removed(mysql_target: MysqlTarget, mysql_prefix: str, mysql_admin: Any) -> None:
    name = mysql_prefix + "gone"
    mysql_target.apply([_user(name)])
    M.q(mysql_admin, f"DROP USER {M.account(mysql_admin, name)}")  # as after an interrupted drop
    mysql_target.apply([_user(mysql_prefix + "next")])
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, name)}")  # a hand-made namesake later
    assert mysql_target.inspect().roles[name].marker is None


def test_diff_ignores_valid_until_on_targets_without_it() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    leave = datetime(2026, 6, 1, tzinfo=UTC)
    user = DesiredUser("u", "id-u", "u", "s", Lifecycle.ACTIVE, Reason("r", "r"), leave, {})
    desired = DesiredState({"u": user}, frozenset(), frozenset({"s"}))
    role = ActualRole("u", login=True, marker=Marker(RoleKind.USER, "id-u", "s", granted=frozenset()))
    for caps, expect in ((MARIADB, ()), (POSTGRESQL, (ChangeKind.ALTER_ROLE,))):
        state = ActualState("t", {"u": role}, "svc", capabilities=caps)
        changes, notices = diff(desired, state, DiffPolicy(), now)
        assert tuple(c.kind for c in changes) == expect
        assert any(n.code == "scheduled_disable" for n in notices)
    joiner, _ = diff(desired, ActualState("t", {}, "svc", capabilities=MARIADB), DiffPolicy(), now)
    assert joiner[0].param("valid_until") is None


def test_config_union_and_factory(tmp_path: Path) -> None:
    data = {
        "sources": [{"name": "s", "type": "ldif", "path": "d.ldif"}],
        "targets": [
            {"name": "pg", "type": "postgresql", "dsn": "host=x"},
            {"name": "maria", "type": "mysql", "protected_roles": ["dba"], "drift": "revoke"},
        ],
    }
    cfg = parse_config(data, tmp_path / "c.toml")
    pg, maria = cfg.targets
    assert isinstance(pg, PostgresTargetConfig) and isinstance(maria, MysqlTargetConfig)
    assert maria.account_host == "%" and maria.meta_database == "provisioner_meta" and maria.privilege_owners == ()
    assert isinstance(build_target(maria), MysqlTarget)
    data["targets"] = [{"name": "maria", "type": "mysql", "port": 0, "dsn": "x"}]
    with pytest.raises(ConfigError) as bad:
        parse_config(data, tmp_path / "c.toml")
    assert "targets[0].port" in str(bad.value) and "targets[0].dsn" in str(bad.value)
    with pytest.raises(ConfigError, match="auth_plugin"):
        MysqlTarget(MysqlTargetConfig(type="mysql", name="m", auth_plugin="pam; DROP"))
