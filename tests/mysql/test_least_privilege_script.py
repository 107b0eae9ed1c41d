"""deploy/least-privilege-mysql.sql runs as written (names substituted) on the shared
MariaDB and yields an account with exactly the privileges every MariaDB test's
login has (tests/support/mysql.py reads the same GRANT lines): no SUPER, no global
GRANT OPTION, nothing on mysql.* beyond the two grant tables."""

from __future__ import annotations

from typing import Any

import pymysql

from tests.support import mysql as M


def test_script_creates_the_least_privilege_account(mysql_prefix: str, mysql_admin: Any) -> None:
    svc, meta = f"{mysql_prefix}svc", f"{mysql_prefix}meta"
    text = M.LEAST_PRIVILEGE_SCRIPT.read_text().replace("'provisioner'@'%'", f"'{svc}'@'%'")
    text = text.replace("provisioner_meta", meta)
    statements = [
        s.strip()
        for s in "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).split(";")
        if s.strip()
    ]
    assert statements[0].startswith("CREATE USER IF NOT EXISTS")
    for statement in statements:
        M.q(mysql_admin, statement)
    grants = {row[0] for row in M.q(mysql_admin, f"SHOW GRANTS FOR '{svc}'@'%'")}
    assert any("CREATE USER" in g and "CONNECTION ADMIN" in g and "PROCESS" in g and "ON *.*" in g for g in grants)
    assert not any("SUPER" in g or "ALL PRIVILEGES" in g for g in grants), grants
    assert not any("ON *.*" in g and "WITH GRANT OPTION" in g for g in grants), grants
    assert any(f"`{meta}`.*" in g for g in grants) and any("`mysql`.`roles_mapping`" in g for g in grants)
    # it runs again without error (idempotent)
    for statement in statements:
        M.q(mysql_admin, statement)
    # and the account can log in once it has a real password
    M.set_password(svc, "pw-" + mysql_prefix)
    conn = pymysql.connect(host=M.HOST, port=M.PORT, user=svc, password="pw-" + mysql_prefix)
    conn.close()
