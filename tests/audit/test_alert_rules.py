"""The pure alert rules: which records, counts and notices deserve an alert."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from provisioner.core.governance.alerts import AlertPolicy, History, Severity, count_sensitive, evaluate
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.privileges.catalog import build_catalog
from tests.audit.support import ROLES, grant

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CATALOG = build_catalog([("roles.toml", ROLES.format(p=""))])[0]


def rec(kind: EventKind, **kw: Any) -> dict[str, Any]:
    return AuditEvent("run-1", AT, "svc", "schedule", kind, **kw).content()


def test_only_roles_at_or_above_min_sensitivity_alert() -> None:
    records = [grant("run-1", AT, "u", g).content() for g in ("trade_reader", "trade_executor", "trade_approver", "unknown")]
    high = evaluate(records, CATALOG, History(), AlertPolicy())
    assert [a.facts["role"] for a in high] == ["trade_executor", "trade_approver"]
    assert [a.severity for a in high] == [Severity.WARNING, Severity.CRITICAL]
    medium = evaluate(records, CATALOG, History(), AlertPolicy(min_sensitivity=CATALOG.sensitivity("trade_reader")))
    assert len(medium) == 3
    assert count_sensitive(records, CATALOG, AlertPolicy().min_sensitivity) == 2


def test_rapid_change_fires_only_above_the_threshold() -> None:
    change = [grant("run-1", AT, "u", "trade_reader").content()]  # this run changed something (not sensitive)
    sensitive = [grant("run-1", AT, "u", "trade_approver").content()]
    assert evaluate(sensitive, CATALOG, History(sensitive_changes_in_window=5), AlertPolicy())[1:] == []
    burst = History(sensitive_changes_in_window=6, burst_started="2026-03-02T11:00:00+00:00")
    alerts = evaluate(sensitive, CATALOG, burst, AlertPolicy())[1:]
    assert [(a.key, a.severity) for a in alerts] == [("rapid_change:2026-03-02T11:00:00+00:00", Severity.CRITICAL)]
    # a run that changed no sensitive role (a plan, a quiet run) does not raise it, whatever the window holds
    assert evaluate([], CATALOG, burst, AlertPolicy()) == []
    assert evaluate(change, CATALOG, burst, AlertPolicy()) == []


def test_breaker_trip_alerts() -> None:
    alerts = evaluate([rec(EventKind.BREAKER_TRIPPED, target="pg", reason="40% of roles would lose access")],
                      CATALOG, History(), AlertPolicy())
    assert [(a.key, a.title) for a in alerts] == [("breaker:pg", "Circuit breaker tripped on pg")]
    assert "40%" in alerts[0].body


def test_failure_streak_and_source_health() -> None:
    failed = rec(EventKind.RUN_FAILED, reason="cannot reach ldap", after={"error": "TargetUnavailable"})
    assert evaluate([failed], CATALOG, History(failure_streak=2), AlertPolicy()) == []
    alerts = evaluate([failed], CATALOG, History(failure_streak=3), AlertPolicy())
    assert [a.key for a in alerts] == ["run_failing"]
    unhealthy = rec(EventKind.RUN_FAILED, reason="empty", after={"error": "SourceUnhealthy"})
    assert [a.key for a in evaluate([unhealthy], CATALOG, History(failure_streak=4), AlertPolicy())] == [
        "source_unhealthy"]
    finished = rec(EventKind.RUN_FINISHED)
    assert evaluate([finished], CATALOG, History(failure_streak=9), AlertPolicy()) == []


def test_out_of_band_grant_of_a_sensitive_role() -> None:
    notices = [
        {"level": "warning", "code": "drift", "role": "eve", "target": "pg",
         "message": "eve is a member of 'trade_approver' but no rule grants it (drift = report)"},
        {"level": "warning", "code": "drift", "role": "bob", "target": "pg",
         "message": "bob is a member of 'trade_reader' but no rule grants it (drift = report)"},
        {"level": "info", "code": "future_hire", "role": "zed", "target": "pg",
         "message": "zed starts on 2026-04-01 'trade_approver'"},
    ]
    alerts = evaluate([rec(EventKind.RUN_PLANNED, after={"notices": notices})], CATALOG, History(), AlertPolicy())
    assert [(a.key, a.severity) for a in alerts] == [("drift:pg:eve:trade_approver", Severity.CRITICAL)]
    assert alerts[0].title == "Out-of-band grant of sensitive role trade_approver: eve"


def test_recovered_changes_alert_too() -> None:
    r = grant("run-1", AT, "u", "trade_approver").content()
    r["kind"] = EventKind.CHANGE_RECOVERED.value
    alerts = evaluate([r], CATALOG, History(), AlertPolicy())
    assert len(alerts) == 1 and "recovered after an interrupted run" in alerts[0].body
