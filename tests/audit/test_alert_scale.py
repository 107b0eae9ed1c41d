"""Alert evaluation after a large run: the run's records are streamed, and change
records are not read back at all when no catalog role is sensitive enough to alert on
(a first sync writes one record per change, tens of thousands)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.alerts import run_alerts
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.store.audit import AuditFilter, AuditRow
from provisioner.store.state import StateStore
from tests.audit.support import alert_config, grant

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ALERTS = '[alerts]\nmin_sensitivity = "high"\n'


def _big_run(store: StateStore, changes: int, group: str) -> None:
    store.append([grant("big", NOW, f"u{i:05d}", group) for i in range(changes)])
    store.append([AuditEvent("big", NOW, "svc", "schedule", EventKind.BREAKER_TRIPPED, "pg", reason="too many")])


def _spy(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"rows": 0, "window": 0}
    original, window = store.audit.iter_rows, store.audit.contents_since

    def iter_rows(flt: AuditFilter | None = None, batch: int = 5000) -> Iterator[AuditRow]:
        for row in original(flt, batch):
            seen["rows"] += 1
            yield row

    def contents_since(*args: Any) -> Iterator[dict[str, Any]]:
        for content in window(*args):
            seen["window"] += 1
            yield content

    monkeypatch.setattr(store.audit, "iter_rows", iter_rows)
    monkeypatch.setattr(store.audit, "contents_since", contents_since)
    return seen


def test_no_change_record_is_read_back_when_no_role_can_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = alert_config(tmp_path, ALERTS)
    shutil.rmtree(tmp_path / "mappings" / "roles")  # no catalog: every role is low
    store = StateStore(cfg.state.url)
    try:
        _big_run(store, 3000, "readers")
        seen = _spy(store, monkeypatch)
        alerts = run_alerts(cfg, store, "big", now=NOW)
    finally:
        store.close()
    assert [a.title for a in alerts] == ["Circuit breaker tripped on pg"]
    assert seen == {"rows": 1, "window": 0}, seen


def test_sensitive_changes_of_a_large_run_still_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = alert_config(tmp_path, ALERTS + "rapid_change_count = 100000\n")
    store = StateStore(cfg.state.url)
    try:
        _big_run(store, 3000, "trade_reader")  # medium: no alert, but must be looked at
        store.append([grant("big", NOW, "jdoe", "trade_approver")])
        seen = _spy(store, monkeypatch)
        alerts = run_alerts(cfg, store, "big", now=NOW)
    finally:
        store.close()
    assert sorted(a.title for a in alerts) == ["Circuit breaker tripped on pg", "Sensitive role trade_approver granted to jdoe"]
    assert seen["rows"] == 3002 and seen["window"] == 3001


def test_apply_intents_are_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An apply intent repeats every change of its transaction (5,000 by default): alert
    evaluation never looks at one, nor at begun / completed markers, whatever the catalog."""
    cfg = alert_config(tmp_path, ALERTS + "rapid_change_count = 100000\n")
    store = StateStore(cfg.state.url)
    changes = [grant("big", NOW, f"u{i:05d}", "trade_approver").change for i in range(2000)]
    try:
        store.append([
            AuditEvent("big", NOW, "svc", "schedule", EventKind.APPLY_INTENT, "pg", after={"changes": changes}),
            AuditEvent("big", NOW, "svc", "schedule", EventKind.APPLY_BEGUN, "pg", after={"transaction": None}),
            grant("big", NOW, "jdoe", "trade_approver"),
            AuditEvent("big", NOW, "svc", "schedule", EventKind.APPLY_COMPLETED, "pg", after={"intended": 1}),
        ])
        seen = _spy(store, monkeypatch)
        alerts = run_alerts(cfg, store, "big", now=NOW)
    finally:
        store.close()
    assert [a.title for a in alerts] == ["Sensitive role trade_approver granted to jdoe"]
    assert seen["rows"] == 1, seen  # the change record only


def test_every_kind_evaluate_ignores_is_never_read() -> None:
    """EVALUATED_KINDS is what evaluate reads: a record of any other kind raises nothing,
    whatever it holds (so leaving it unread cannot lose an alert)."""
    from provisioner.core.governance.alerts import EVALUATED_KINDS, AlertPolicy, History, evaluate
    from provisioner.core.privileges.catalog import Catalog

    history = History(sensitive_changes_in_window=10**6, failure_streak=10, previous_failure_streak=10)
    sensitive = grant("r", NOW, "jdoe", "trade_approver").content()
    for kind in EventKind:
        record = {**sensitive, "kind": kind.value, "after": {"notices": [], "error": "X"}}
        alerts = evaluate([record], Catalog({}), history, AlertPolicy(min_sensitivity=Catalog({}).sensitivity("x")))
        if kind not in EVALUATED_KINDS:
            assert alerts == [], kind
