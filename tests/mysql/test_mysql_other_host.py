"""A leaver beside an account of the same user name with another host part.

E2E finding (session 14): ``alice@127.0.0.1``, made by a DBA beside the managed
``alice@%``, is never changed (docs/mysql.md).  When alice left, the plan locked
``alice@%``, killed every session of the user ``alice`` -- including the other account's,
MariaDB's processlist names no host -- and said nothing else: the other account could log in
again at once, holding its roles, and no notice told anyone that the leaver still had a login."""

from __future__ import annotations

from typing import Any

import pymysql

from tests.mysql.support import MysqlSetup, Person, make_mysql_setup
from tests.support import mysql as M


def test_a_leavers_other_host_account_is_named_in_the_plan(
    tmp_path: Any, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env: MysqlSetup = make_mysql_setup(tmp_path, p, mysql_login)
    local = M.account(mysql_admin, p + "alice", "127.0.0.1")
    M.q(mysql_admin, f"CREATE USER {local} IDENTIFIED BY 'local-test-password'")
    env.people(Person("alice", "Trading"), Person("bob", "Operations"))
    env.setup.apply()
    env.people(Person("alice", "Trading", status="terminated"), Person("bob", "Operations"))
    plan = env.setup.apply()
    assert M.locked(p + "alice") is True and M.role_grants(p).get(p + "alice") is None
    M.connect_as(p + "alice", "local-test-password").close()  # the other account still logs in
    warnings = [n for t in plan.targets for n in t.notices if n.level.value == "warning" and n.role == f"{p}alice"]
    assert any(f"{p}alice@127.0.0.1" in n.message and "log in" in n.message for n in warnings), [
        (n.code, n.message) for t in plan.targets for n in t.notices
    ]
    M.q(mysql_admin, f"ALTER USER {local} ACCOUNT LOCK")  # locked by hand: nothing more to say
    again = env.setup.plan()
    assert not [n for t in again.targets for n in t.notices if f"{p}alice@127.0.0.1" in n.message]
    try:
        M.connect_as(p + "alice", "local-test-password").close()
        raise AssertionError("a locked account logged in")
    except pymysql.err.OperationalError:
        pass
