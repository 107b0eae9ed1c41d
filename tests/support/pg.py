"""PostgreSQL helpers for tests.

Roles are cluster-global and several people's tests share one server, so every
role a test creates must start with a prefix from :func:`role_prefix_scope`,
which drops every role with that prefix when the scope ends.

The server is ``$PROVISIONER_TEST_PG_DSN`` (default: the local PostgreSQL on
127.0.0.1:5432); when nothing answers there, an embedded pgserver instance is
started once per test process and used instead.  Tests never skip for a
missing server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from provisioner.config import PostgresTargetConfig

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
ENV_DSN = "PROVISIONER_TEST_PG_DSN"


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def start_pgserver(prefix: str = "provisioner-pg-") -> str:
    """Start a throw-away embedded PostgreSQL (pgserver) and return its URI.

    The data directory is deleted when the process exits."""
    from pgserver.postgres_server import get_server

    parent = Path(tempfile.mkdtemp(prefix=prefix))
    parent.chmod(0o755)  # pgserver runs postgres as another user when we are root
    server = get_server(parent / "data", cleanup_mode="delete")
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    return str(server.get_uri())


@cache
def admin_dsn() -> str:
    """A superuser DSN of the shared test server (see module docstring)."""
    dsn = os.environ.get(ENV_DSN, DEFAULT_DSN)
    if _answers(dsn):
        return dsn
    return start_pgserver()


@cache
def pg16_dsn() -> str:
    """A superuser DSN of a private embedded PostgreSQL 16 (pgserver), started
    once per process: for behaviour that differs between 15 and 16."""
    return start_pgserver("provisioner-pg16-")


def admin_connect(dsn: str | None = None) -> psycopg.Connection[Any]:
    """An autocommit superuser connection (close it, or use it in ``with``)."""
    return psycopg.connect(dsn or admin_dsn(), autocommit=True, connect_timeout=10)


def new_prefix() -> str:
    """A unique, lower-case role-name prefix such as ``t3f9a01c2_``."""
    return f"t{uuid.uuid4().hex[:8]}_"


def roles_with_prefix(conn: psycopg.Connection[Any], prefix: str) -> list[str]:
    rows = conn.execute(
        "SELECT rolname::text FROM pg_catalog.pg_roles WHERE starts_with(rolname, %s) ORDER BY 1",
        (prefix,),
    ).fetchall()
    return [r[0] for r in rows]


def drop_roles_with_prefix(prefix: str, dsn: str | None = None) -> list[str]:
    """Drop every role whose name starts with ``prefix`` (objects they own in
    the connected database are dropped too).  Returns the names dropped."""
    if len(prefix) < 4:
        raise ValueError(f"refusing to drop roles by the short prefix {prefix!r}")
    with admin_connect(dsn) as conn:
        names = roles_with_prefix(conn, prefix)
        if not names:
            return []
        # 500 per transaction, because
        # PostgreSQL's lock table cannot hold tens of thousands of roles at once.
        for i in range(0, len(names), 500):
            idents = sql.SQL(", ").join(sql.Identifier(n) for n in names[i : i + 500])
            with conn.transaction():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(idents))
                conn.execute(sql.SQL("DROP ROLE {}").format(idents))
        return names


@contextmanager
def role_prefix_scope(dsn: str | None = None) -> Iterator[str]:
    """Yield a unique role-name prefix; drop every role carrying it afterwards."""
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        drop_roles_with_prefix(prefix, dsn)


def target_config(
    name: str | None = None, dsn: str | None = None, **overrides: Any
) -> PostgresTargetConfig:
    """A :class:`PostgresTargetConfig` for the test server."""
    data: dict[str, Any] = {
        "type": "postgresql",
        "name": name or f"test-{uuid.uuid4().hex[:8]}",
        "dsn": dsn or admin_dsn(),
        "connect_timeout": 5,
        "allow_superuser": True,  # the tests' admin DSN is a superuser
    }
    data.update(overrides)
    return PostgresTargetConfig.model_validate(data)
