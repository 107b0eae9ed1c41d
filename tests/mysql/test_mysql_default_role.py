"""MariaDB default roles (``manage_default_role = true``) through the real pipeline:
a user with one managed role logs in with it active; several roles keep a default
only when it is one of them, with a warning naming the user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.core.values.plan import ChangeKind
from tests.mysql.support import MysqlSetup, Person, make_mysql_setup
from tests.support import mysql as M
from tests.support.e2e import RELAXED_SAFETY

ODD = "odd `desk`'; DROP USER root; --"


@pytest.fixture
def env(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> MysqlSetup:
    with M.admin_connect() as conn:  # what docs/mysql.md asks for manage_default_role
        M.q(conn, f"GRANT UPDATE ON mysql.* TO {M.account(conn, mysql_login.user)}")
    return make_mysql_setup(tmp_path, mysql_prefix, mysql_login, extra="manage_default_role = true\n" + RELAXED_SAFETY)


def _default(user: str) -> str | None:
    with M.admin_connect() as conn:
        rows = M.q(
            conn,
            "SELECT JSON_VALUE(Priv, '$.default_role') FROM mysql.global_priv WHERE User = %s AND Host = '%'",
            (user,),
        )
    return (rows[0][0] or None) if rows else None


def _current_role(user: str) -> Any:
    M.set_password(user, "pw-" + user[-6:])
    with M.connect_as(user, "pw-" + user[-6:]) as conn:
        return M.q(conn, "SELECT CURRENT_ROLE()")[0][0]


def _defaults(plan: Any) -> dict[str, Any]:
    return {
        c.role: c.param("default_role")
        for c in plan.changes
        if c.kind is ChangeKind.ALTER_ROLE and any(k == "default_role" for k, _ in c.params)
    }


def _warned(plan: Any) -> set[str]:
    return {n.role for t in plan.targets for n in t.notices if n.code == "mysql_default_role" and n.level == "warning"}


def test_one_role_is_active_at_login_several_need_set_role(env: MysqlSetup) -> None:
    p = env.prefix
    env.people(Person("carol", "Legal", title="Odd Desk"), Person("alice", "Trading"))
    plan = env.setup.apply()
    assert _defaults(plan) == {f"{p}carol": f"{p}{ODD}"}  # alice: two roles, no default chosen
    assert _warned(plan) == {f"{p}alice"}
    assert _default(f"{p}carol") == f"{p}{ODD}" and _default(f"{p}alice") is None
    assert _current_role(f"{p}carol") == f"{p}{ODD}"
    assert _current_role(f"{p}alice") is None
    again = env.setup.plan()
    assert again.changes == ()


def test_movers_get_their_default_role_moved_or_cleared(env: MysqlSetup) -> None:
    p = env.prefix
    env.people(Person("carol", "Legal", title="Odd Desk"), Person("alice", "Trading"))
    env.setup.apply()
    # carol now holds two managed roles, none of them her old default: cleared, warned;
    # alice drops to one: it becomes her default
    env.people(Person("carol", "Trading"), Person("alice", "Legal", title="Odd Desk"))
    plan = env.setup.apply()
    assert _defaults(plan) == {f"{p}carol": None, f"{p}alice": f"{p}{ODD}"}
    assert _warned(plan) == {f"{p}carol"}
    assert _default(f"{p}carol") is None and _default(f"{p}alice") == f"{p}{ODD}"
    assert _current_role(f"{p}alice") == f"{p}{ODD}"
    assert env.setup.plan().changes == ()


def test_default_set_by_hand_to_one_of_several_roles_is_kept(env: MysqlSetup) -> None:
    p = env.prefix
    env.people(Person("alice", "Trading"))
    env.setup.apply()
    with M.admin_connect() as conn:
        M.q(conn, f"SET DEFAULT ROLE {M.ident(p + 'reader')} FOR {M.account(conn, p + 'alice')}")
    assert env.setup.plan().changes == ()
    assert _current_role(f"{p}alice") == f"{p}reader"
