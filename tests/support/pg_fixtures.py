"""pytest fixtures for PostgreSQL tests (registered through tests/conftest.py).

- ``pg_dsn`` (session): superuser DSN of the shared test server.
- ``pg16_dsn`` (session): superuser DSN of a private embedded PostgreSQL 16.
- ``pg_admin``: an autocommit superuser connection to ``pg_dsn``.
- ``role_prefix``: a unique role-name prefix; roles carrying it are dropped
  after the test.  Every role a test creates must start with it.
- ``pg_target_config``: a :class:`PostgresTargetConfig` for ``pg_dsn`` with a
  unique target name.
- ``pg_target``: a :class:`PostgresTarget` for ``pg_target_config``, closed
  after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from provisioner.config import PostgresTargetConfig
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return pg.admin_dsn()


@pytest.fixture(scope="session")
def pg16_dsn() -> str:
    return pg.pg16_dsn()


@pytest.fixture
def pg_admin(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with pg.admin_connect(pg_dsn) as conn:
        yield conn


@pytest.fixture
def role_prefix(pg_dsn: str) -> Iterator[str]:
    with pg.role_prefix_scope(pg_dsn) as prefix:
        yield prefix


@pytest.fixture
def pg_target_config(pg_dsn: str) -> PostgresTargetConfig:
    return pg.target_config(dsn=pg_dsn)


@pytest.fixture
def pg_target(pg_target_config: PostgresTargetConfig) -> Iterator[PostgresTarget]:
    target = PostgresTarget(pg_target_config)
    try:
        yield target
    finally:
        target.close()
