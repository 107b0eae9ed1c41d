"""The run recorder: a run's history row and audit records, whatever happens, and its alerts
evaluated once when the run closes (never for a manual ``plan``: a dry run alerts nobody).

Planning writes nothing: the records a plan returns (``PlanOutcome.events``) are held by
the run (:meth:`RunRecord.keep`) and appended when it closes, in front of its last
records -- unless an apply wrote them earlier, before its first change."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from provisioner.alerts import deliver_run_alerts, dispatch_alerts
from provisioner.config import Config
from provisioner.core.governance.alerts import chain_broken_alert
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.engine.context import RunContext
from provisioner.errors import PlanError, ProvisionerError, SafetyViolation, StalePlan
from provisioner.logs import log
from provisioner.store.audit import AuditTampered


class RunRecord(dict[str, Any]):
    """The run's summary (its ``run_finished`` record and history row), and the records it
    holds until it closes."""

    def __init__(self, ctx: RunContext) -> None:
        super().__init__()
        self._ctx = ctx

    def keep(self, events: Iterable[AuditEvent]) -> None:
        """Records for the audit trail, appended when the run closes (or by an earlier write)."""
        self._ctx.hold(events)


@contextmanager
def recorded_run(ctx: RunContext, mode: str, cfg: Config | None = None) -> Iterator[RunRecord]:
    """Record the run in the run history and the audit trail, whatever happens.

    With ``[audit] signing_key`` every append verifies the chain after the newest
    signed checkpoint and signs what it adds (store/audit.py); a broken chain stops
    the run before it changes anything (:class:`AuditTampered`, exit 1, critical
    alert).  With ``cfg``, the run's records are evaluated for alerts at the end
    (never for a manual ``plan``: a dry run alerts nobody).
    """
    store = ctx.store
    assert store is not None
    try:
        store.audit.check_signed()
    except AuditTampered as exc:
        exc.run_id = ctx.run_id
        tampered(ctx, cfg, exc)
        raise
    store.start_run(ctx.trigger, ctx.actor, mode, run_id=ctx.run_id)
    summary = RunRecord(ctx)
    try:
        yield summary
    except ProvisionerError as exc:
        exc.run_id = exc.run_id or ctx.run_id
        kind = (
            EventKind.PLAN_REFUSED
            if isinstance(exc, (StalePlan, SafetyViolation, PlanError))
            else EventKind.RUN_FAILED
        )
        outcome = "refused" if kind is EventKind.PLAN_REFUSED else "failed"
        _close(ctx, cfg, mode, [ctx.event(kind, reason=str(exc), after={"error": type(exc).__name__})],
               outcome, summary, str(exc))
        log.error("run_failed", run_id=ctx.run_id, error=type(exc).__name__, message=str(exc))
        raise
    except Exception as exc:
        _close(ctx, cfg, mode, [ctx.event(EventKind.RUN_FAILED, reason=repr(exc), after={"error": type(exc).__name__})],
               "failed", summary, repr(exc))
        raise
    outcome = summary.pop("_outcome", "ok")
    _close(ctx, cfg, mode, [ctx.event(EventKind.RUN_FINISHED, reason=outcome, after=dict(summary))], outcome,
           summary, None)
    log.info("run_summary", run_id=ctx.run_id, mode=mode, outcome=outcome, **summary)


def _close(
    ctx: RunContext,
    cfg: Config | None,
    mode: str,
    events: list[AuditEvent],
    outcome: str,
    summary: dict[str, Any],
    error: str | None,
) -> None:
    """The records the run held, its last records, its history row (chained as
    ``run_recorded``), then its alerts."""
    store = ctx.store
    assert store is not None
    try:
        ctx.audit(events)
        row = store.finish_run(ctx.run_id, outcome, dict(summary), error)
        ctx.audit([ctx.event(EventKind.RUN_RECORDED, reason=outcome, after=row)])
    except AuditTampered as exc:  # the chain was tampered with during the run: nothing more is signed
        tampered(ctx, cfg, exc)
        raise
    close_run(ctx, cfg, mode)


def tampered(ctx: RunContext, cfg: Config | None, exc: AuditTampered) -> None:
    """A broken chain: logged, a critical alert (never rate-limited), the run history says so."""
    log.critical("audit_chain_broken", run_id=ctx.run_id, message=str(exc))
    if cfg is not None and ctx.store is not None:
        dispatch_alerts([chain_broken_alert(str(exc))], cfg.alerts, ctx.store)


def close_run(ctx: RunContext, cfg: Config | None, mode: str) -> None:
    """Send the alerts the run's records call for (none for a manual plan); never raises."""
    store = ctx.store
    if store is None or cfg is None:
        return
    if mode == "plan" and ctx.trigger == "manual":
        return
    _, counts = deliver_run_alerts(cfg, store, ctx.run_id)
    if ctx.trigger == "manual" and counts.total:
        print(counts.summary_line(), file=sys.stderr)
