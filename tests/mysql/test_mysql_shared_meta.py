"""Two installations (two targets) sharing one MariaDB server and one meta database.

E2E finding (session 14): every apply first removes marker rows whose account does not
exist (``drop_orphan_markers``), under the lock of its own target only.  A create writes
its marker row, then ``CREATE USER``: another installation's apply starting between the
two statements took the fresh row for an orphan and deleted it, so the account was
created unmarked -- unmanaged from then on, never disabled when its person leaves."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.targets import mysql_apply
from provisioner.targets.mysql import MysqlTarget
from tests.mysql.test_mysql_target import _user
from tests.support import mysql as M


def test_another_installations_apply_never_unmarks_an_account_being_created(
    mysql_target: MysqlTarget, mysql_login: M.Login, mysql_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = mysql_prefix
    other = MysqlTarget(mysql_login.target_config(f"{p}other"))  # same server, same meta database
    original = mysql_apply.Executor.put_marker
    done: list[Any] = []

    def put_marker(self: mysql_apply.Executor, name: str, host: str, marker: Any, valid_until: Any = None) -> None:
        original(self, name, host, marker, valid_until)
        if name == p + "x" and not done:  # between x's marker row and its CREATE USER
            try:
                done.append(other.apply([_user(p + "y")]))
            except Exception as exc:  # waiting for the meta lock and giving up is fine too
                done.append(exc)

    monkeypatch.setattr(mysql_apply.Executor, "put_marker", put_marker)
    monkeypatch.setattr("provisioner.targets.mysql.LOCK_TIMEOUT_SECONDS", 1)
    try:
        result = mysql_target.apply([_user(p + "x")])
        assert [c.role for c in result.applied] == [p + "x"] and done
        assert mysql_target.inspect().roles[p + "x"].marker is not None, "created unmarked: never managed again"
        if isinstance(done[0], Exception):  # it waited for the first and gave up: it applies now
            other.apply([_user(p + "y")])
        assert mysql_target.inspect().roles[p + "y"].marker is not None
    finally:
        other.close()
