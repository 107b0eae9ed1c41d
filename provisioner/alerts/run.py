"""Evaluate the audit records of a finished run and dispatch the alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioner.alerts.dispatch import DispatchCounts, dispatch_alerts
from provisioner.config import AlertsConfig, Config
from provisioner.core.governance.alerts import (
    EVALUATED_KINDS,
    Alert,
    AlertPolicy,
    History,
    count_sensitive,
    evaluate,
    sensitive_role,
)
from provisioner.core.governance.audit import CHANGE_KINDS
from provisioner.core.privileges.catalog import Catalog, Sensitivity
from provisioner.errors import ProvisionerError
from provisioner.logs import log
from provisioner.mappings import load_mappings
from provisioner.store.audit import AuditFilter
from provisioner.store.state import StateStore

_ALL_KINDS = tuple(sorted(k.value for k in EVALUATED_KINDS))
_OTHER_KINDS = tuple(sorted(k.value for k in EVALUATED_KINDS if k not in CHANGE_KINDS))


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


def can_be_sensitive(catalog: Catalog, minimum: Sensitivity) -> bool:
    """Whether any change could touch a role of ``minimum`` sensitivity or more
    (roles outside the catalog are low)."""
    return minimum <= Sensitivity.LOW or any(r.sensitivity >= minimum for r in catalog.roles.values())


def history(store: StateStore, catalog: Catalog, pol: AlertPolicy, now: datetime) -> History:
    recent = (
        [
            c for c in store.audit.contents_since(now - pol.rapid_change_window, CHANGE_KINDS)
            if sensitive_role(c, catalog, pol.min_sensitivity) is not None
        ]
        if can_be_sensitive(catalog, pol.min_sensitivity)
        else []  # no change can count: do not read the window's change records
    )
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
        # streamed, and without the run's change records when none can be sensitive:
        # a first sync writes one record per change (tens of thousands)
        # (apply intents, which repeat every change, are never read: evaluate ignores them)
        kinds = _ALL_KINDS if can_be_sensitive(catalog, pol.min_sensitivity) else _OTHER_KINDS
        records = (row.content for row in store.audit.iter_rows(AuditFilter(run_id=run_id, kinds=kinds)))
        alerts = evaluate(records, catalog, history(store, catalog, pol, now), pol)
    except Exception as exc:
        log.error("alert_evaluation_failed", run_id=run_id, error=type(exc).__name__, message=str(exc))
        return [], DispatchCounts()
    return alerts, dispatch_alerts(alerts, cfg.alerts, store, now=now)
