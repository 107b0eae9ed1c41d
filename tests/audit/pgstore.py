"""A scratch database on the shared PostgreSQL for state-store tests (dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from tests.support import pg


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """A fresh database named ``t<hex>_<label>``; yields its superuser SQLAlchemy URL."""
    name = f"t{uuid.uuid4().hex[:10]}_{label}"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(pg.admin_dsn())
    user = params.get("user", "postgres")
    try:
        yield f"postgresql://{user}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{name}"
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
