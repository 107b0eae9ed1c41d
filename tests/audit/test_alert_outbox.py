"""Durable alerts (issue 17): the outbox in the state store, retries, the rate cap that never
drops a critical alert, dedup that cannot be silenced by a future timestamp, alerts only from
runs that change or find something, privilege alerts that name the privilege and the object,
override / recovery / delivery-failure alerts and the outbox metrics.  Real HTTP webhooks on
loopback; the outbox in SQLite and in the real PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.alerts import dispatch_alerts, run_alerts
from provisioner.config import Config
from provisioner.core.governance.alerts import Alert, AlertPolicy, History, Severity, evaluate
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.privileges.catalog import build_catalog
from provisioner.engine.context import RunContext
from provisioner.engine.record import recorded_run
from provisioner.store.state import StateStore
from tests.audit.pgstore import scratch_database
from tests.audit.servers import closed_port, webhook_server
from tests.audit.support import alert_config, grant

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

ALERTS = """
[alerts]
rapid_change_count = 3
rapid_change_window = "1h"
timeout = 2
retry_attempts = 2
retry_backoff = "0s"
{extra}

[[alerts.webhooks]]
name = "sec"
url = "env:TEST_HOOK"
"""


def config(tmp: Path, extra: str = "") -> Config:
    return alert_config(tmp, ALERTS.format(extra=extra))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The state store: a SQLite file, or a fresh database on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    with scratch_database("outbox") as url:
        yield url


def keys(hook: Any) -> list[str]:
    return [b["alert"]["key"] for b in hook.bodies]


def test_a_webhook_down_for_three_runs_gets_every_alert_once_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    cfg = config(tmp_path)
    store = StateStore(store_url)
    expected = []
    try:
        with webhook_server(status=503) as down:
            monkeypatch.setenv("TEST_HOOK", down.url)
            for i in range(3):
                run = f"run-{i}"
                store.append([grant(run, NOW + timedelta(minutes=i), f"u{i}", "trade_approver")])
                found = run_alerts(cfg, store, run, now=NOW + timedelta(minutes=i))
                expected += [a.key for a in found]
            # each run tries the oldest waiting alert twice (retry_attempts), in order, and stops there
            assert len(down.bodies) == 3 * 2 and {b["alert"]["key"] for b in down.bodies} == {expected[0]}
            assert store.outbox.depth() == 3 and store.outbox.failures_total() == 3 * 2
        with webhook_server() as back:
            monkeypatch.setenv("TEST_HOOK", back.url)
            store.append([AuditEvent("run-3", NOW + timedelta(minutes=3), "svc", "schedule", EventKind.RUN_FINISHED)])
            run_alerts(cfg, store, "run-3", now=NOW + timedelta(minutes=3))  # a quiet run drains the outbox
            run_alerts(cfg, store, "run-4", now=NOW + timedelta(minutes=4))
        assert len(expected) == 3
        assert keys(back) == expected  # every alert, in order, exactly once
        assert store.outbox.depth() == 0
    finally:
        store.close()


def test_critical_alerts_are_never_dropped_by_the_rate_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, "max_per_hour = 1")
    store = StateStore(cfg.state.url)
    crit = [Alert(Severity.CRITICAL, f"c{i}", f"critical {i}", "b") for i in range(3)]
    warn = [Alert(Severity.WARNING, f"w{i}", f"warning {i}", "b") for i in range(3)]
    try:
        with webhook_server() as hook:
            monkeypatch.setenv("TEST_HOOK", hook.url)
            counts = dispatch_alerts([*crit, *warn], cfg.alerts, store, now=NOW)
    finally:
        store.close()
    assert keys(hook)[:3] == ["c0", "c1", "c2"]
    assert keys(hook)[3:] == ["rate_limited_digest:webhook:sec:2026-03-02T12"]  # the held ones, summarised
    digest = hook.bodies[3]["alert"]
    assert all(f"warning {i}" in digest["body"] for i in range(3)) and digest["facts"]["held_back"] == "3"
    assert (counts.sent, counts.held) == (4, 3)


def test_dedup_rows_dated_in_the_future_silence_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path)
    store = StateStore(cfg.state.url)
    alert = Alert(Severity.CRITICAL, "breaker:pg", "Circuit breaker tripped on pg", "stopped")
    try:
        with webhook_server() as hook:
            monkeypatch.setenv("TEST_HOOK", hook.url)
            dispatch_alerts([alert], cfg.alerts, store, now=NOW)
            # an attacker with the writer's credentials stamps every dedup / rate row in 2099
            db = sqlite3.connect(tmp_path / "state.db")
            db.execute("UPDATE provisioner_alert_outbox SET created_at = '2099-01-01 00:00:00.000000', "
                       "sent_at = '2099-01-01 00:00:00.000000'")
            db.commit()
            db.close()
            dispatch_alerts([alert], cfg.alerts, store, now=NOW + timedelta(minutes=5))
    finally:
        store.close()
    assert keys(hook) == ["breaker:pg", "breaker:pg"]


def test_a_failed_delivery_is_not_marked_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dedup window must not swallow an alert that never went out."""
    cfg = config(tmp_path)
    store = StateStore(cfg.state.url)
    alert = Alert(Severity.WARNING, "k", "t", "b")
    try:
        monkeypatch.setenv("TEST_HOOK", f"http://127.0.0.1:{closed_port()}/")
        first = dispatch_alerts([alert], cfg.alerts, store, now=NOW)
        with webhook_server() as hook:
            monkeypatch.setenv("TEST_HOOK", hook.url)
            second = dispatch_alerts([alert], cfg.alerts, store, now=NOW + timedelta(minutes=1))
    finally:
        store.close()
    assert (first.sent, first.queued, first.failed) == (0, 1, 2)
    assert (second.sent, second.suppressed) == (1, 1)  # the queued one goes out; the repeat is a duplicate
    assert keys(hook) == ["k"]


def test_a_plan_alerts_nobody_an_apply_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path)
    store = StateStore(cfg.state.url)
    try:
        with webhook_server() as hook:
            monkeypatch.setenv("TEST_HOOK", hook.url)
            for mode in ("plan", "apply"):
                ctx = RunContext(datetime.now(UTC), "jdoe", "manual", store=store)
                with recorded_run(ctx, mode, cfg):
                    ctx.audit([grant(ctx.run_id, datetime.now(UTC), "u1", "trade_approver")])
                    ctx.audit([ctx.event(EventKind.BREAKER_TRIPPED, target="pg", reason="40%")])
                if mode == "plan":
                    assert hook.bodies == []
    finally:
        store.close()
    assert sorted(k.split(":")[0] for k in keys(hook)) == ["breaker", "sensitive"]


def test_privilege_alerts_name_the_privilege_and_the_object() -> None:
    catalog, problems = build_catalog(
        [("roles.toml", '[role.trade_approver]\ndescription = "d"\nowner = "o"\nsensitivity = "critical"\n')]
    )
    assert problems == []
    records = []
    for table in ("orders", "limits"):
        change = {
            "kind": "grant_privilege",
            "role": "trade_approver",
            "params": {"database": "trading", "object_type": "table", "schema": "desk", "name": table,
                       "column": "", "owner": "", "privileges": "UPDATE"},
            "summary": f"grant UPDATE on desk.{table}",
        }
        records.append(AuditEvent("r", NOW, "svc", "schedule", EventKind.CHANGE_APPLIED, "pg", "trade_approver",
                                  change).content())
    alerts = evaluate(records, catalog, History(), AlertPolicy())
    assert [a.title for a in alerts] == [
        "Privilege UPDATE on table desk.orders in database trading granted to sensitive role trade_approver",
        "Privilege UPDATE on table desk.limits in database trading granted to sensitive role trade_approver",
    ]
    assert len({a.key for a in alerts}) == 2  # a later grant to the same role is not a duplicate


def test_override_recovery_and_a_second_burst_are_alerted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, 'failure_streak = 2\nmin_sensitivity = "critical"')
    store = StateStore(cfg.state.url)
    try:
        with webhook_server() as hook:
            monkeypatch.setenv("TEST_HOOK", hook.url)
            rid = store.start_run("schedule", "svc", "apply")
            store.append([AuditEvent(rid, NOW, "jdoe", "manual", EventKind.OVERRIDE, "pg", reason="CHG-9 desk closed")])
            store.finish_run(rid, "ok", {})
            run_alerts(cfg, store, rid, now=NOW)
            for _ in range(2):
                rid = store.start_run("schedule", "svc", "apply")
                store.append([AuditEvent(rid, NOW, "svc", "schedule", EventKind.RUN_FAILED, reason="boom",
                                         after={"error": "TargetUnavailable"})])
                store.finish_run(rid, "failed", {}, "boom")
                run_alerts(cfg, store, rid, now=NOW)
            rid = store.start_run("schedule", "svc", "apply")
            store.append([AuditEvent(rid, NOW, "svc", "schedule", EventKind.RUN_FINISHED, reason="ok")])
            store.finish_run(rid, "ok", {})
            run_alerts(cfg, store, rid, now=NOW)
            for burst, start in enumerate((NOW, NOW + timedelta(hours=2))):
                for j in range(4):
                    at = start + timedelta(minutes=j)
                    store.append([grant(f"b{burst}{j}", at, f"u{j}", "trade_approver")])
                    run_alerts(cfg, store, f"b{burst}{j}", now=at)
    finally:
        store.close()
    got = keys(hook)
    assert got[0].startswith("override:") and "CHG-9" in hook.bodies[0]["alert"]["body"]
    assert "run_failing" in got and any(k.startswith("recovered:") for k in got)
    assert [k for k in got if k.startswith("rapid_change")] == [
        f"rapid_change:{NOW.isoformat()}", f"rapid_change:{(NOW + timedelta(hours=2)).isoformat()}"
    ]


def test_outbox_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.daemon.metrics import Metrics

    cfg = config(tmp_path)
    store = StateStore(cfg.state.url)
    try:
        monkeypatch.setenv("TEST_HOOK", f"http://127.0.0.1:{closed_port()}/")
        dispatch_alerts([Alert(Severity.WARNING, f"k{i}", "t", "b") for i in range(3)], cfg.alerts, store, now=NOW)
        metrics = Metrics()
        metrics.watch_alerts(store.outbox)
        text = metrics.render().decode()
    finally:
        store.close()
    assert "provisioner_alerts_failed_total 2.0" in text  # two attempts at the oldest; the rest wait
    assert "provisioner_alert_outbox_depth 3.0" in text


def test_alerts_reach_a_recovered_webhook_in_order_whatever_the_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E2E finding (session 14): with a real backoff (``retry_backoff = "1s"``) the oldest waiting
    alert sat out its backoff while alerts queued after it were due at once: the webhook, back up,
    received the later alerts first and the first (critical) one only at a later run -- docs/alerts.md
    promises the channel's later rows wait behind it and every alert arrives in order."""
    cfg = alert_config(tmp_path, ALERTS.replace('retry_backoff = "0s"', 'retry_backoff = "1s"').format(extra=""))
    store = StateStore(cfg.state.url)
    first, second, third = (Alert(Severity.CRITICAL, f"a{i}", f"alert {i}", "b") for i in range(3))
    try:
        with webhook_server(status=503) as down:
            monkeypatch.setenv("TEST_HOOK", down.url)
            dispatch_alerts([first], cfg.alerts, store, now=NOW, sleep=lambda _s: None)  # waits 4 s
            dispatch_alerts([second], cfg.alerts, store, now=NOW + timedelta(seconds=10), sleep=lambda _s: None)
            assert {b["alert"]["key"] for b in down.bodies} == {"a0"}  # a1 waited behind a0 (now 16 s)
        with webhook_server() as back:
            monkeypatch.setenv("TEST_HOOK", back.url)
            dispatch_alerts([third], cfg.alerts, store, now=NOW + timedelta(seconds=20), sleep=lambda _s: None)
            dispatch_alerts([], cfg.alerts, store, now=NOW + timedelta(minutes=2), sleep=lambda _s: None)
        assert keys(back) == ["a0", "a1", "a2"]
        assert store.outbox.depth() == 0
    finally:
        store.close()
