"""Hand grants wider than one object are rated by what they cover (MariaDB).

E2E finding (session 14): a DBA's ``GRANT DELETE ON *.*``, ``GRANT DELETE ON trading.*``
(escaped or typed as a pattern) to a managed account gives DELETE on the catalog's critical
tables, but its ``privilege_drift`` warning was rated ``[sensitivity low]`` -- below the alert
bar -- because only grants on the very same object were rated: broad drift went unalerted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mysql.catalog import make_catalog_setup
from tests.support import mysql as M


def test_database_wide_and_global_hand_grants_are_rated_by_the_objects_they_cover(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    trader = M.account(mysql_admin, p + "bkaczmarek")
    escaped = p.replace("_", "\\_") + "trading"
    M.q(mysql_admin, f"GRANT DELETE ON *.* TO {trader}")
    M.q(mysql_admin, f"GRANT DROP ON `{escaped}`.* TO {trader}")  # exactly the trading database
    M.q(mysql_admin, f"GRANT ALTER ON `{p}trading`.* TO {trader}")  # typed as DBAs do: a pattern covering it
    drift = {
        n.message.split(" on ", 1)[1].split(",", 1)[0]: n.message
        for t in env.setup.plan().targets
        for n in t.notices
        if n.code == "privilege_drift" and n.role == p + "bkaczmarek"
    }
    assert set(drift) == {"every database (*.*)", f"all tables in schema {p}trading",
                          f"all tables in schema {p}trading (pattern)"}, drift
    for message in drift.values():
        assert "[sensitivity critical]" in message, message
