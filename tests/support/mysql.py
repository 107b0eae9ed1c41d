"""MariaDB test support (registered as pytest fixtures through tests/conftest.py).

Accounts and roles are server-global and several engineers run tests at the
same time: every account a test creates carries the unique prefix of
``mysql_prefix``; the fixture drops every user and role whose name starts with
it, and the per-test meta database, when the test ends.

- ``mysql_admin``: an autocommit root connection to the shared server.
- ``mysql_prefix``: a unique name prefix (``my<hex>_``), cleaned up afterwards.
- ``mysql_login``: the least-privilege provisioner account of docs/mysql.md
  (``<prefix>svc``), a :class:`Login` with its config and password file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from provisioner.config import MysqlTargetConfig
from provisioner.targets.mysql import MysqlTarget

HOST = os.environ.get("PROVISIONER_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("PROVISIONER_TEST_MYSQL_PORT", "3306"))

LEAST_PRIVILEGE_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "least-privilege-mysql.sql"


def least_privilege_sql(script: Path = LEAST_PRIVILEGE_SCRIPT) -> tuple[str, ...]:
    """The GRANT statements of deploy/least-privilege-mysql.sql, with ``{svc}`` for the
    account and ``{meta}`` for the marker database: every MariaDB test's login has
    exactly the shipped privileges."""
    out = []
    for line in script.read_text().splitlines():
        if line.startswith("GRANT "):
            statement = line.rstrip(";").replace("'provisioner'@'%'", "{svc}").replace("provisioner_meta", "{meta}")
            out.append(statement)
    assert out, f"{script} has no GRANT statement"
    return tuple(out)


LEAST_PRIVILEGE_SQL = least_privilege_sql()


def admin_connect(**kwargs: Any) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True, **kwargs)


def connect_as(user: str, password: str) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=HOST, port=PORT, user=user, password=password, autocommit=True)


def q(conn: pymysql.connections.Connection[Any], sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """``sql`` may hold escaped literals (``'%'``): with params, its other ``%`` are doubled first."""
    if params is not None:
        sql = sql.replace("%", "%%").replace("%%s", "%s")
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def account(conn: pymysql.connections.Connection[Any], user: str, host: str = "%") -> str:
    return f"{conn.escape(user)}@{conn.escape(host)}"


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def cleanup(prefix: str) -> None:
    """Drop every account and role whose name starts with ``prefix``, and the
    prefix's meta database."""
    with admin_connect() as conn:
        rows = q(
            conn,
            "SELECT User, Host, COALESCE(JSON_VALUE(Priv, '$.is_role'), 'false') IN ('true', '1') FROM mysql.global_priv"
            " WHERE LEFT(User, %s) = %s",
            (len(prefix), prefix),
        )
        for user, host, is_role in rows:
            if is_role:
                q(conn, f"DROP ROLE IF EXISTS {ident(user)}")
            else:
                q(conn, f"DROP USER IF EXISTS {account(conn, user, host)}")
        q(conn, f"DROP DATABASE IF EXISTS {ident(prefix + 'meta')}")
        schemas = q(
            conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, %s) = %s",
            (len(prefix), prefix),
        )
        for (schema,) in schemas:  # the trading objects of privilege tests
            q(conn, f"DROP DATABASE IF EXISTS {ident(schema)}")


@dataclass
class Login:
    """The least-privilege provisioner account of one test."""

    user: str
    password_file: Path
    password: str
    meta_database: str

    def target_config(self, name: str, **extra: Any) -> MysqlTargetConfig:
        data = {
            "type": "mysql",
            "name": name,
            "host": HOST,
            "port": PORT,
            "user": self.user,
            "password": f"file:{self.password_file}",
            "meta_database": self.meta_database,
            **extra,
        }
        return MysqlTargetConfig.model_validate(data)


def create_login(prefix: str, directory: Path) -> Login:
    user, meta = f"{prefix}svc", f"{prefix}meta"
    password = uuid.uuid4().hex
    path = directory / f"{user}.password"
    path.write_text(password)
    path.chmod(0o600)
    with admin_connect() as conn:
        svc = account(conn, user)
        q(conn, f"CREATE USER {svc} IDENTIFIED BY %s", (password,))
        for statement in LEAST_PRIVILEGE_SQL:
            q(conn, statement.format(svc=svc, meta=ident(meta)))
    return Login(user, path, password, meta)


def set_password(user: str, password: str, host: str = "%") -> None:
    """Test only: give a managed account a password so a test can log in as it."""
    with admin_connect() as conn:
        q(conn, f"ALTER USER {account(conn, user, host)} IDENTIFIED BY %s", (password,))


def role_grants(prefix: str) -> dict[str, set[str]]:
    """account user -> roles granted to it, for users carrying ``prefix`` (not the
    provisioner's own ``<prefix>svc``, which holds the roles it created WITH ADMIN OPTION)."""
    with admin_connect() as conn:
        rows = q(
            conn,
            "SELECT User, Role FROM mysql.roles_mapping WHERE LEFT(User, %s) = %s AND User <> %s",
            (len(prefix), prefix, prefix + "svc"),
        )
    out: dict[str, set[str]] = {}
    for user, role in rows:
        out.setdefault(str(user), set()).add(str(role))
    return out


def locked(user: str, host: str = "%") -> bool | None:
    with admin_connect() as conn:
        rows = q(
            conn,
            "SELECT COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false') FROM mysql.global_priv"
            " WHERE User = %s AND Host = %s",
            (user, host),
        )
    return None if not rows else rows[0][0] in ("true", "1")


@pytest.fixture
def mysql_admin() -> Iterator[pymysql.connections.Connection[Any]]:
    conn = admin_connect()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def mysql_prefix() -> Iterator[str]:
    prefix = f"my{uuid.uuid4().hex[:8]}_"
    try:
        yield prefix
    finally:
        cleanup(prefix)


@pytest.fixture
def mysql_login(mysql_prefix: str, tmp_path: Path) -> Login:
    return create_login(mysql_prefix, tmp_path)


@pytest.fixture
def mysql_target(mysql_login: Login, mysql_prefix: str) -> Iterator[MysqlTarget]:
    target = MysqlTarget(mysql_login.target_config(f"{mysql_prefix}t"))
    try:
        yield target
    finally:
        target.close()
