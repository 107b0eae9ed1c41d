"""Crash recovery on MariaDB credits the dead run only with what it committed.

E2E finding (session 14): an apply killed (kill -9) half-way leaves an intent without a
completion.  A run within ``[audit] recover_after`` leaves that intent alone and applies the
rest itself (``change_applied``); the run that finally recovers the intent re-read the
catalog and credited the dead run with every change of its intent the catalog shows --
including everything the later run made: those changes were in the trail twice, under two
runs, and the dead run was said to have committed all of its intent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.core.governance.audit import EventKind
from provisioner.engine import execute as runtime
from provisioner.store.state import StateStore
from provisioner.targets import mysql_apply
from tests.mysql.support import Person, make_mysql_setup
from tests.support import mysql as M


class Killed(BaseException):
    """Stands in for the process dying at that point."""


def _rows(tmp_path: Path) -> list[dict[str, Any]]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        return [r.content for r in store.iter_audit()]
    finally:
        store.close()


def _grants(prefix: str) -> set[tuple[str, str]]:
    return {(user, role) for user, roles in M.role_grants(prefix).items() for role in roles}


def test_recovery_never_credits_the_dead_run_with_a_later_runs_changes(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = mysql_prefix
    env = make_mysql_setup(tmp_path, p, mysql_login)
    env.people(*(Person(f"u{i}", "Trading") for i in range(4)))
    t0 = datetime.now(UTC)
    original = mysql_apply.Executor.run
    grants = [0]

    def run(self: mysql_apply.Executor, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        if statement.startswith("GRANT `"):
            grants[0] += 1
            if grants[0] > 3:
                raise Killed  # the process dies after three grants committed
        return original(self, statement, params)

    def die(*args: object, **kw: object) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(mysql_apply.Executor, "run", run)
        m.setattr(runtime, "completion_event", die)  # a dead process records nothing more
        with pytest.raises(Killed):
            env.setup.apply(now=t0)
    dead_made = _grants(p)
    assert len(dead_made) == 3
    dead = next(r for r in _rows(tmp_path) if r["kind"] == EventKind.APPLY_INTENT.value)

    env.setup.apply(now=t0 + timedelta(minutes=1))  # within recover_after: the intent is left alone
    later = {(r["role"], r["change"]["params"]["group"]) for r in _rows(tmp_path)
             if r["kind"] == EventKind.CHANGE_APPLIED.value and r["change"]["kind"] == "grant_membership"}
    assert len(later) == 5 and not later & dead_made

    env.setup.apply(now=t0 + timedelta(minutes=12))  # recovers the dead run's intent
    rows = _rows(tmp_path)
    recovered = [r for r in rows if r["kind"] == EventKind.CHANGE_RECOVERED.value]
    assert all(r["after"]["interrupted_run"] == dead["run_id"] for r in recovered)
    credited = {(r["role"], r["change"]["params"]["group"]) for r in recovered if r["change"]["kind"] == "grant_membership"}
    assert credited == dead_made, f"credited to the dead run: {sorted(credited - dead_made)} made by the later run"
    completion = next(r for r in rows if r["kind"] == EventKind.APPLY_COMPLETED.value and r["after"].get("recovered"))
    creates = sum(1 for r in recovered if r["change"]["kind"] == "create_role")
    assert completion["after"]["committed"] == creates + 3
