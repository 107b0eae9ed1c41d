"""A password set by hand on a managed MariaDB account is reported (issue 20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mysql.support import Person, make_mysql_setup
from tests.support import mysql as M


def test_password_set_by_hand_on_managed_account_is_drift(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_mysql_setup(tmp_path, p, mysql_login)
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, p + 'handmade')} IDENTIFIED BY 'x-Secret-1'")
    env.people(Person("alice", "Trading"), Person("bob", "Operations"))
    env.setup.apply()
    assert [n for n in env.setup.plan().targets[0].notices if n.code == "credential_drift"] == []
    M.set_password(f"{p}bob", "set-by-a-dba")  # a way in that bypasses the identity provider
    plan = env.setup.plan()
    drift = [n for n in plan.targets[0].notices if n.code == "credential_drift"]
    assert [(n.role, n.level.value) for n in drift] == [(f"{p}bob", "warning")]
    assert "set-by-a-dba" not in drift[0].message  # never the secret, nor its hash
    assert plan.changes == ()  # reported, never silently reset
    # the provisioner's own account and unmanaged accounts with passwords are not drift
    assert not any(n.role in (mysql_login.user, p + "handmade") for n in drift)
