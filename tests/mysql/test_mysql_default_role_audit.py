"""The audit trail names the default role a MariaDB change set.

E2E finding (session 14): with ``manage_default_role = true`` the ``alter_role`` change that
runs ``SET DEFAULT ROLE`` was summarised ``alter role alice `` -- nothing said what changed --
in its ``change_applied`` record (what ``audit show`` prints), the apply log and failure
messages: only the raw parameters held the role."""

from __future__ import annotations

from pathlib import Path

from provisioner.core.governance.audit import EventKind
from provisioner.store.state import StateStore
from tests.mysql.support import Person, make_mysql_setup
from tests.support import mysql as M
from tests.support.e2e import RELAXED_SAFETY


def test_a_default_role_change_is_summarised_with_the_role(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login
) -> None:
    p = mysql_prefix
    with M.admin_connect() as conn:
        M.q(conn, f"GRANT UPDATE ON mysql.* TO {M.account(conn, mysql_login.user)}")
    env = make_mysql_setup(tmp_path, p, mysql_login, extra="manage_default_role = true\n" + RELAXED_SAFETY)
    env.people(Person("alice", "Legal", title="Auditor"))
    with M.admin_connect() as conn:
        M.q(conn, f"CREATE ROLE {M.ident(p + 'foreign')}")
        M.q(conn, f"GRANT {M.ident(p + 'foreign')} TO {M.account(conn, mysql_login.user)} WITH ADMIN OPTION")
    env.setup.apply()
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        summaries = [
            r.content["change"]["summary"]
            for r in store.iter_audit()
            if r.content["kind"] == EventKind.CHANGE_APPLIED.value and r.content["change"]["kind"] == "alter_role"
        ]
    finally:
        store.close()
    assert summaries == [f"alter role {p}alice DEFAULT ROLE {p}foreign"], summaries
