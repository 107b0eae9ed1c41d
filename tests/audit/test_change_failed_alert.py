"""An isolated change the target refused deserves one alert per run (issue 14)."""

from __future__ import annotations

from provisioner.core.governance.alerts import AlertPolicy, History, Severity, evaluate
from provisioner.core.governance.audit import EventKind
from provisioner.core.values.plan import ChangeKind, make_change
from tests.audit.test_alert_rules import AT, CATALOG, rec


def test_refused_changes_alert_once_per_run_listing_each() -> None:
    refused = [
        rec(
            EventKind.CHANGE_FAILED,
            target="pg",
            role=role,
            change=make_change(ChangeKind.CREATE_ROLE, role, (), login=True, role_kind="user").to_json(),
            reason=f'role "{role}" already exists',
        )
        for role in ("ann", "bob")
    ]
    alerts = evaluate(refused, CATALOG, History(), AlertPolicy())
    assert [(a.key, a.severity, a.title) for a in alerts] == [
        ("change_failed:run-1", Severity.CRITICAL, "2 change(s) did not happen")
    ]
    assert 'pg: create role ann (user, LOGIN): role "ann" already exists' in alerts[0].body
    assert "bob" in alerts[0].body and alerts[0].facts["failed"] == "2" and AT.isoformat() in alerts[0].facts["at"]
