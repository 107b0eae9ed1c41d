"""Leavers are never held back on MariaDB (issue 14): a grant the server refuses
(a role a DBA created by hand, on which the provisioner holds no ADMIN OPTION)
is skipped and reported; the leaver of the same run is locked, its sessions
ended and its roles revoked, before any grant runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.core.governance.audit import EventKind
from provisioner.errors import ApplyFailed
from provisioner.store.state import StateStore
from tests.mysql.support import MysqlSetup, Person, make_mysql_setup
from tests.support import mysql as M


@pytest.fixture
def env(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> MysqlSetup:
    return make_mysql_setup(tmp_path, mysql_prefix, mysql_login)


def test_refused_grant_never_holds_back_a_leaver(env: MysqlSetup, mysql_admin: Any) -> None:
    p = env.prefix
    M.q(mysql_admin, f"CREATE ROLE {M.ident(p + 'foreign')}")  # brownfield: the provisioner has no ADMIN OPTION
    env.people(Person("alice", "Trading"), Person("bob", "Trading"))
    env.setup.apply()
    assert M.locked(f"{p}bob") is False

    # bob leaves; alice becomes an auditor (the grant the server refuses); carol joins
    env.people(
        Person("alice", "Trading", title="Auditor"),
        Person("bob", "Trading", status="terminated"),
        Person("carol", "Operations"),
    )
    with pytest.raises(ApplyFailed) as failed:
        env.setup.apply()
    message = str(failed.value)
    assert message.startswith("1 change(s) did not happen") and f"grant {p}foreign to {p}alice" in message
    assert M.locked(f"{p}bob") is True, "the leaver is locked in the same run"
    grants = M.role_grants(p)
    assert f"{p}bob" not in grants, "and holds no role any more"
    assert grants[f"{p}carol"] == {f"{p}ops", f"{p}reader"}, "the joiner is applied too"
    assert grants[f"{p}alice"] == {f"{p}trader", f"{p}reader"}

    cfg = env.setup.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        failed_records = [r.content for r in store.iter_audit() if r.content["kind"] == EventKind.CHANGE_FAILED]
    finally:
        store.close()
    assert [(r["role"], r["change"]["summary"]) for r in failed_records] == [
        (f"{p}alice", f"grant {p}foreign to {p}alice")
    ]
    assert failed_records[0]["reason"], "the server's message is recorded"
    # the next run retries exactly what did not happen
    assert [c.describe() for c in env.setup.plan().changes] == [f"grant {p}foreign to {p}alice"]
