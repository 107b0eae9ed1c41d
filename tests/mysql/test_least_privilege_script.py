"""deploy/least-privilege-mysql.sql runs as written (names substituted) on the shared
MariaDB and yields an account with exactly the privileges every MariaDB test's
login has (tests/support/mysql.py reads the same GRANT lines): no SUPER, no global
GRANT OPTION, nothing on mysql.* beyond the two grant tables."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

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


def test_root_login_is_refused_unless_allowed(mysql_prefix: str, mysql_admin: Any, tmp_path: Any) -> None:
    """A target logging in as an account with ALL PRIVILEGES / SUPER / global GRANT OPTION
    is refused before anything is read; ``allow_superuser = true`` lets it through."""
    from provisioner.config import MysqlTargetConfig
    from provisioner.errors import ConfigError
    from provisioner.targets.mysql import MysqlTarget

    name = f"{mysql_prefix}boss"
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, name)} IDENTIFIED BY %s", ("pw-" + mysql_prefix,))
    M.q(mysql_admin, f"GRANT ALL PRIVILEGES ON *.* TO {M.account(mysql_admin, name)} WITH GRANT OPTION")
    secret = tmp_path / "boss.pass"
    secret.write_text("pw-" + mysql_prefix)
    secret.chmod(0o600)
    base = {"type": "mysql", "name": f"{mysql_prefix}t", "host": M.HOST, "port": M.PORT, "user": name}
    base["password"] = f"file:{secret}"
    target = MysqlTarget(MysqlTargetConfig.model_validate(base))
    try:
        with pytest.raises(ConfigError) as info:
            target.connection()
        assert "allow_superuser = true" in str(info.value) and name in str(info.value)
    finally:
        target.close()
    allowed = MysqlTarget(MysqlTargetConfig.model_validate({**base, "allow_superuser": True}))
    try:
        assert allowed.connection().open
    finally:
        allowed.close()
