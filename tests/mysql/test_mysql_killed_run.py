"""A CLI apply killed outright (kill -9) against MariaDB, then the next apply.

The next apply recovers the dead run's intent (docs/audit.md, "Crash consistency") and the
chain verifies.  E2E finding (session 14): the dead run's history row stays ``running``
forever -- ``runs list`` shows an apply in progress that ended long ago, and the run never
counts as failed (the alerts' failure streak reads that table)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mysql.support import Person, make_mysql_setup
from tests.support import mysql as M
from tests.support.e2e import RELAXED_SAFETY

EXE = str(Path(sys.executable).with_name("provisioner"))
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=ENV, timeout=120, check=False)


def _kinds(db: Path) -> list[str]:
    try:
        with sqlite3.connect(db) as conn:
            return [k for (k,) in conn.execute("SELECT kind FROM provisioner_audit ORDER BY seq")]
    except sqlite3.Error:
        return []


@pytest.mark.xfail(strict=True, reason="recovery closes a killed run's intent but never finishes its run history row")
def test_a_killed_apply_is_recovered_and_its_run_no_longer_shows_running(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login
) -> None:
    env = make_mysql_setup(tmp_path, mysql_prefix, mysql_login, extra=RELAXED_SAFETY + '\n[audit]\nrecover_after = "1s"\n')
    env.people(*(Person(f"u{i:03d}", "Trading") for i in range(300)))
    config, db = str(env.setup.path), tmp_path / "state.db"
    proc = subprocess.Popen([EXE, "apply", "-c", config, "--reason", "CHG1"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "apply_begun" not in _kinds(db) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-apply: 902 changes take seconds on MariaDB
    proc.wait()
    assert "apply_completed" not in _kinds(db)
    time.sleep(1.2)  # past recover_after
    second = _cli("apply", "-c", config, "--reason", "CHG2")
    assert second.returncode == 0, second.stderr
    assert "apply_intent_recovered" in second.stderr
    assert _cli("audit", "verify", "-c", config).returncode == 0
    runs = _cli("runs", "list", "-c", config).stdout.splitlines()[1:]
    assert len(runs) == 2 and " ok " in runs[0]
    assert " running " not in runs[1], runs[1]
