"""Evaluate the audit records of a finished run and dispatch the alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioner.alerts.dispatch import DispatchCounts, dispatch_alerts
from provisioner.config import AlertsConfig, Config
from provisioner.core.alerts import Alert, AlertPolicy, History, count_sensitive, evaluate, sensitive_role
from provisioner.core.audit import CHANGE_KINDS
from provisioner.core.catalog import Catalog, Sensitivity
from provisioner.errors import ProvisionerError
from provisioner.logs import log
from provisioner.mappings import load_mappings
from provisioner.store.state import StateStore


def policy(cfg: AlertsConfig) -> AlertPolicy:
    return AlertPolicy(
        Sensitivity.parse(cfg.min_sensitivity),
        cfg.rapid_change_count,
        timedelta(seconds=cfg.rapid_change_window),
        cfg.failure_streak,
    )


def load_catalog(cfg: Config) -> Catalog:
    try:
        return load_mappings(cfg.mappings_dir).catalog
    except ProvisionerError as exc:
        log.warning("alert_catalog_unavailable", message=str(exc).splitlines()[0])
        return Catalog({})


def history(store: StateStore, catalog: Catalog, pol: AlertPolicy, now: datetime) -> History:
    recent = [
        c for c in store.audit.contents_since(now - pol.rapid_change_window, CHANGE_KINDS)
        if sensitive_role(c, catalog, pol.min_sensitivity) is not None
    ]
    runs = store.list_runs(limit=2 * pol.failure_streak + 2)
    streak = 0
    for run in runs:
        if run.get("outcome") != "failed":
            break
        streak += 1
    previous = 0
    for run in runs[1:]:
        if run.get("outcome") != "failed":
            break
        previous += 1
    return History(
        count_sensitive(recent, catalog, pol.min_sensitivity),
        streak,
        previous,
        str(min((str(c.get("at")) for c in recent), default="")),
    )


def run_alerts(cfg: Config, store: StateStore, run_id: str, now: datetime | None = None) -> list[Alert]:
    """Alerts for the records of ``run_id``, dispatched; never raises."""
    return deliver_run_alerts(cfg, store, run_id, now)[0]


def deliver_run_alerts(
    cfg: Config, store: StateStore, run_id: str, now: datetime | None = None
) -> tuple[list[Alert], DispatchCounts]:
    """The alerts ``run_id``'s records call for, and what became of them; never raises."""
    now = now or datetime.now(UTC)
    try:
        catalog = load_catalog(cfg)
        pol = policy(cfg.alerts)
        records = [row.content for row in store.iter_audit(run_id=run_id)]
        alerts = evaluate(records, catalog, history(store, catalog, pol, now), pol)
    except Exception as exc:
        log.error("alert_evaluation_failed", run_id=run_id, error=type(exc).__name__, message=str(exc))
        return [], DispatchCounts()
    return alerts, dispatch_alerts(alerts, cfg.alerts, store, now=now)
