from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["tests.support.fixtures", "tests.support.pg_fixtures", "tests.support.mysql"]


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """A test that configures logging (the daemon's ``--log-level warning``) must not
    filter the log events a later test captures with ``capture_logs``."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)
