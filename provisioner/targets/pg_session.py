"""PostgreSQL session settings: how every connection of the target is opened.

Application name, TCP keepalives, lock and statement timeouts, the server versions
whose behaviour differs, a password-free endpoint for messages, and the embedded server for demos.
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from provisioner.errors import TargetUnavailable

APPLICATION_NAME = "provisioner"
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
"""libpq TCP keepalives on every connection: a server (or a network path) that vanished
without closing the connection is noticed within about a minute, not after the
operating system's default two hours."""
FIRST_VERSION_WITH_CREATEROLE_LIMITS = 160000
"""Before PostgreSQL 16 a CREATEROLE role can grant itself any non-superuser role,
``pg_execute_server_program`` included (docs/deployment.md)."""
FIRST_VERSION_WITH_GRANTOR_ROWS = 160000
"""From PostgreSQL 16 a membership is recorded once per grantor."""


SESSION_SETTINGS = (
    "SELECT pg_catalog.set_config('lock_timeout', %s, false), pg_catalog.set_config('statement_timeout', %s, false),"
    " pg_catalog.set_config('jit', 'off', false)"
)
"""Set on every session of the target (inspect, apply, other databases) right after connecting.
JIT off: the catalog reads are estimated dear (an ACL filtered against thousands of managed
names per object) and crossed ``jit_above_cost``, and compiling them took 0.3 s per query
while running them takes milliseconds; no statement of the provisioner gains from it."""


def session_timeouts(lock_timeout: float, statement_timeout: float) -> tuple[str, str]:
    """The two settings in milliseconds (PostgreSQL's unit), at least 1."""
    return f"{max(1, round(lock_timeout * 1000))}ms", f"{max(1, round(statement_timeout * 1000))}ms"


def describe_endpoint(dsn: str) -> str:
    """``host=... port=...`` of a connection string (never the password)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "host=? port=?"
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "(default)"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    return f"host={host} port={port}"


_EMBEDDED_START_SECONDS = 120.0


def embedded_dsn(data_dir: str) -> str:
    """Start (or reuse) a pgserver instance in ``data_dir`` and return its URI."""
    path = Path(data_dir).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    # platformdirs (imported by pgserver) warns when XDG_RUNTIME_DIR is unset (root, CI): not ours to report
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", category=Warning)
        try:
            from pgserver.postgres_server import PostgresServer, get_server
        except ImportError as exc:
            raise TargetUnavailable("embedded = true needs the 'pgserver' package") from exc
    # pgserver gives `pg_ctl start` 10 seconds; on a loaded machine the postmaster can take longer
    # and keeps starting in the background.  Wait for it to be ready, then take a new handle.
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", category=Warning)
            try:
                server = get_server(path)
            except subprocess.TimeoutExpired:
                _wait_until_ready(path.resolve(), _EMBEDDED_START_SECONDS)
                server = PostgresServer(path.resolve())
    except Exception as exc:
        raise TargetUnavailable(f"cannot start the embedded PostgreSQL in {path}: {exc}") from exc
    return str(server.get_uri())


def _wait_until_ready(pgdata: Path, seconds: float) -> None:
    from pgserver.utils import PostmasterInfo

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            info = PostmasterInfo.read_from_pgdata(pgdata)
        except Exception:  # postmaster.pid is written line by line while starting
            info = None
        if info is not None and info.is_running() and info.status == "ready":
            return
        time.sleep(0.5)
    raise TimeoutError(f"the embedded PostgreSQL did not become ready within {seconds:.0f} s")
