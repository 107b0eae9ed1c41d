"""The embedded PostgreSQL (pgserver) on a slow machine.

pgserver gives ``pg_ctl start`` ten seconds.  On a loaded machine the postmaster can take
longer and keeps starting after pg_ctl was given up on; ``embedded_dsn`` must then reuse it
instead of failing the run (CI saw quickstart runs fail this way under load).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pgserver.postgres_server as pg_server_module
import psycopg
import pytest

from provisioner.targets.pg_session import embedded_dsn


def test_a_start_slower_than_pgservers_timeout_reuses_the_starting_server(monkeypatch: pytest.MonkeyPatch) -> None:
    real_pg_ctl = pg_server_module.pg_ctl
    calls: list[list[str]] = []

    def slow_pg_ctl(args: list[str], pgdata: Path | None = None, **kwargs: Any) -> str:
        calls.append(list(args))
        if args[-1] == "start" and len([c for c in calls if c[-1] == "start"]) == 1:
            # what a loaded machine does: pg_ctl is still waiting when pgserver's timeout expires
            kwargs["timeout"] = 0.05
        return str(real_pg_ctl(args, pgdata=pgdata, **kwargs))

    monkeypatch.setattr(pg_server_module, "pg_ctl", slow_pg_ctl)
    # pgserver runs the server as the `pgserver` user when started by root: outside pytest's
    # private (0700) temporary root
    base = Path(tempfile.mkdtemp(prefix="provisioner-embedded-"))
    base.chmod(0o755)
    data = base / "pgdata"
    try:
        dsn = embedded_dsn(str(data))
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert [c[-1] for c in calls].count("start") == 1, calls
    finally:
        if (data / "postmaster.pid").exists():
            pg_server_module.pg_ctl(["-m", "immediate", "stop"], pgdata=data, user=_system_user())
        shutil.rmtree(base, ignore_errors=True)


def _system_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None
