"""Crash recovery credits only what committed (issue 14, finding 8).

A run dies (a) while waiting for the target's lock, or (b) inside its
transaction before COMMIT.  A later run then makes the same changes and
commits them.  Recovering the dead run's intent must not credit it with
those changes: the catalog shows them, but they are not the dead run's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.core.governance.audit import EventKind
from provisioner.engine import execute as runtime
from provisioner.store.state import StateStore
from provisioner.targets import pg_apply
from provisioner.targets.postgres import PostgresTarget
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu


class Killed(BaseException):
    """Stands in for the process dying at that point."""


def _rows(tmp_path: Path) -> list[dict[str, Any]]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        return [r.content for r in store.iter_audit()]
    finally:
        store.close()


def _die(*args: object, **kw: object) -> None:
    raise Killed


@pytest.mark.parametrize("where", ["at_lock", "before_commit"])
def test_recovery_never_credits_a_rolled_back_run(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("cat", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    t0 = datetime.now(UTC)
    with monkeypatch.context() as m:
        m.setattr(runtime, "completion_event", _die)  # a dead process records no completion
        if where == "at_lock":
            m.setattr(PostgresTarget, "_lock", _die)
        else:
            m.setattr(pg_apply.BatchRunner, "run", _die)
        with pytest.raises(Killed):
            setup.apply(now=t0)
    assert f"{p}cat" not in memberships(p), "the dead run committed nothing"
    dead = next(r for r in _rows(tmp_path) if r["kind"] == EventKind.APPLY_INTENT.value)

    setup.apply(now=t0 + timedelta(minutes=1))  # a later run makes the same changes (the intent is left alone)
    assert memberships(p)[f"{p}cat"] == {f"{p}trade_executor", f"{p}trade_reader"}
    setup.apply(now=t0 + timedelta(minutes=11))  # past recover_after: the dead run's intent is closed

    rows = _rows(tmp_path)
    assert [r for r in rows if r["kind"] == EventKind.CHANGE_RECOVERED.value] == [], "nothing credited"
    closing = [r for r in rows if r["kind"] == EventKind.APPLY_COMPLETED.value and r["after"].get("recovered")]
    assert len(closing) == 1 and closing[0]["run_id"] == dead["run_id"]
    assert closing[0]["after"]["committed"] == 0
    expected = "never started" if where == "at_lock" else "did not commit"
    assert expected in closing[0]["after"]["status"]
