"""The role catalog's object privileges on MariaDB 10.11 (issue 20): the shipped catalog
plans, applies and re-plans empty; a mover loses access; hand grants are drift; what
MariaDB cannot express is a precise plan error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymysql
import pytest

from provisioner.core.values.plan import ChangeKind, NoticeLevel
from tests.mysql.catalog import make_catalog_setup
from tests.support import mysql as M


def show_grants(conn: Any, role: str) -> set[str]:
    """``SHOW GRANTS`` of a role, without the always-present ``USAGE ON *.*``."""
    rows = M.q(conn, f"SHOW GRANTS FOR {M.ident(role)}")
    return {str(r[0]) for r in rows if " ON *.* " not in str(r[0]) and not str(r[0]).startswith("GRANT `")}


def login_as(user: str) -> pymysql.connections.Connection[Any]:
    M.set_password(user, "pw-" + user)
    return M.connect_as(user, "pw-" + user)


def test_shipped_catalog_applies_privileges_and_replans_empty(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    plan = env.setup.apply()
    notices = plan.targets[0].notices
    assert [n.message for n in notices if n.level is NoticeLevel.ERROR] == []
    assert not [n for n in notices if n.code in ("privileges_unmanaged", "privileges_not_supported")]
    implied = [n.message for n in notices if n.code == "privilege_implied"]
    assert any("[role." + p + "trade_reader] grants[0]: CONNECT on database" in m for m in implied)
    assert any(f"[role.{p}trade_reader] grants[1]: USAGE on schema {p}trading" in m for m in implied)
    t, r = f"`{p}trading`", f"`{p}risk`"
    # a wildcard is one grant on the database (every table now and later); `_` escaped: never a pattern
    assert show_grants(mysql_admin, p + "trade_reader") == {
        f"GRANT SELECT ON `{p.replace('_', chr(92) + '_')}trading`.* TO `{p}trade_reader`",
        f"GRANT SELECT ON `{p.replace('_', chr(92) + '_')}reference`.* TO `{p}trade_reader`",
        f"GRANT SELECT ON {r}.`positions` TO `{p}trade_reader`",
    }
    executor = show_grants(mysql_admin, p + "trade_executor")
    assert f"GRANT INSERT, UPDATE ON {t}.`orders` TO `{p}trade_executor`" in executor
    assert f"GRANT SELECT, INSERT ON {t}.`orders_id_seq` TO `{p}trade_executor`" in executor  # NEXTVAL
    approver = show_grants(mysql_admin, p + "trade_approver")
    assert f"GRANT EXECUTE ON PROCEDURE {t}.`approve_order` TO `{p}trade_approver`" in approver
    assert any("UPDATE (`approved_at`, `approved_by`, `status`)" in g or "UPDATE (" in g for g in approver)
    assert show_grants(mysql_admin, p + "dba_tools") == set()
    again = env.setup.plan()
    assert [c.describe("mariadb") for c in again.changes] == []
    # the grants work: a trader enters an order (its id from the sequence), cannot approve it
    trader = p + "bkaczmarek"
    with login_as(trader) as conn:
        M.q(conn, f"SET ROLE {M.ident(p + 'trade_executor')}")
        M.q(conn, f"INSERT INTO {t}.orders (instrument_id, side, qty, trader) VALUES (1, 'buy', 10, 'b')")
        assert M.q(conn, f"SELECT COUNT(*) FROM {t}.orders")[0][0] == 1  # SELECT inherited from trade_reader
        with pytest.raises(pymysql.err.OperationalError, match="1142"):
            M.q(conn, f"UPDATE {t}.approvals SET status = 'approved'")


def test_mover_loses_privileges_through_membership(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    trader, t = p + "bkaczmarek", f"`{p}trading`"
    with login_as(trader) as conn:
        M.q(conn, f"SET ROLE {M.ident(p + 'trade_executor')}")
        M.q(conn, f"INSERT INTO {t}.orders (instrument_id, side, qty) VALUES (1, 'buy', 1)")
    text = env.ldif.read_text().replace("title: Equity Trader", "title: Trade Approver", 1)  # a mover
    env.ldif.write_text(text)
    plan = env.setup.apply()
    assert (trader, p + "trade_executor") in {
        (c.role, c.param("group")) for c in plan.changes if c.kind is ChangeKind.REVOKE_MEMBERSHIP
    }
    with M.connect_as(trader, "pw-" + trader) as conn:
        with pytest.raises(pymysql.err.OperationalError, match="1959"):  # invalid role specification
            M.q(conn, f"SET ROLE {M.ident(p + 'trade_executor')}")
        M.q(conn, f"SET ROLE {M.ident(p + 'trade_approver')}")
        with pytest.raises(pymysql.err.OperationalError, match="1142"):
            M.q(conn, f"INSERT INTO {t}.orders (instrument_id, side, qty) VALUES (1, 'buy', 1)")
        M.q(conn, f"UPDATE {t}.approvals SET status = 'approved' WHERE order_id = 0")
        M.q(conn, f"CALL {t}.approve_order(0)")
    assert env.setup.plan().changes == ()
