"""Execution: a plan's changes applied per target and transaction, verified by
reading back, every step recorded (intent, begun, applied or failed, completion)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind, Record
from provisioner.core.governance.encode import ChangeTexts
from provisioner.core.reconcile.phases import apply_phases
from provisioner.core.reconcile.verify import verify
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Change, ChangeKind, Plan, TargetPlan, plan_scope, readback_scope, transactions
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.recovery import begun_event, completion_event, intent_event
from provisioner.engine.retention import execute_drops
from provisioner.errors import (
    ApplyFailed,
    PlanError,
    RunInterrupted,
    StalePlan,
    VerificationFailed,
)
from provisioner.logs import log
from provisioner.targets.base import ApplyResult, FailedChange, Target


def refuse_stale(saved: Plan, actual: Mapping[str, ActualState], cfg: Config) -> None:
    if saved.config_digest != cfg.digest:
        raise PlanError(
            "Saved plan was made with a different configuration file "
            f"({saved.config_digest[:19]}..., now {cfg.digest[:19]}...); make a new plan"
        )
    for tp in saved.targets:
        state = actual.get(tp.target)
        if state is None:
            raise PlanError(f"Saved plan names target {tp.target!r}, which is not configured")
        now_fp = state.fingerprint(plan_scope(tp.changes, tp.notices), frozenset(saved.sources))
        if now_fp != tp.fingerprint:
            raise StalePlan(
                f"Saved plan is stale: target {tp.target!r} changed since the plan was made "
                f"({tp.fingerprint[:19]}... -> {now_fp[:19]}...). Run plan again and review it."
            )


def execute(plan: Plan, targets: Targets, ctx: RunContext, limit: int = 0) -> None:
    """``limit``: most changes per transaction (0 = one transaction per phase and target).

    Every target is applied even when an earlier one had isolated failures; the
    run then ends with :class:`ApplyFailed` listing every change that did not happen."""
    not_done: list[str] = []
    for tp in plan.targets:
        if tp.changes:
            if ctx.stop_requested():
                raise RunInterrupted(f"stop requested before target {tp.target!r}; nothing changed there")
            not_done += _execute_target(tp, targets.get(tp.target), ctx, limit)
    if not_done:
        raise ApplyFailed(
            f"{len(not_done)} change(s) did not happen (every other change was applied; "
            "the next run retries them):\n" + "\n".join(not_done)
        )


def _execute_target(tp: TargetPlan, target: Target, ctx: RunContext, limit: int = 0) -> list[str]:
    """Apply and verify one target's changes; retention drops run afterwards, each on its own.

    Two phases (:func:`provisioner.core.reconcile.phases.apply_phases`): the changes that end
    or limit access commit first, then the rest.  Each phase is one transaction, or
    several when over ``limit`` changes (:func:`provisioner.core.values.plan.transactions`),
    each audited on its own.  A change the target refuses is isolated, audited as
    ``change_failed`` and listed in the result; verify checks what was applied."""
    drops = [c for c in tp.changes if c.kind is ChangeKind.DROP_ROLE]
    main = tuple(c for c in tp.changes if c.kind is not ChangeKind.DROP_ROLE)
    done = [0]
    statements = 0
    failed: list[FailedChange] = []
    chunks = [chunk for phase in apply_phases(main) for chunk in transactions(phase, limit)]
    for i, chunk in enumerate(chunks):
        if i and ctx.stop_requested():
            raise RunInterrupted(f"stop requested on target {tp.target!r} after {i} of {len(chunks)} transactions")
        # A role with a refused change keeps the rest of its changes for the next run: they
        # were planned on top of it (a grant's ledger assumes the earlier revoke happened).
        held = {f.change.role for f in failed}
        skipped = [FailedChange(c, "skipped: an earlier change of this role failed in this run") for c in chunk
                   if c.role in held]
        failed += skipped
        if skipped:
            ctx.audit([_failed_event(ctx, tp.target, f) for f in skipped])
        chunk = tuple(c for c in chunk if c.role not in held)
        if not chunk:
            continue
        result = _apply_transaction(tp.target, chunk, target, ctx, done, len(tp.changes))
        statements += result.statements
        failed += result.failed
    # a role with a refused change is not verified (its other changes may depend on it,
    # e.g. sessions of a role whose NOLOGIN waited for a lock); it is reported instead
    refused = {f.change.role for f in failed}
    applied = tuple(c for c in main if c.role not in refused)
    # the warm daemon keeps what the read-back saw: its next inspect need not read these roles again
    kept = ctx.warm.rows_of(tp.target) if ctx.warm is not None else None
    problems = verify(applied, target.inspect(readback_scope(applied), kept)) if applied else []
    if problems:
        raise VerificationFailed(f"target {tp.target!r}: after apply the catalog disagrees:\n" + "\n".join(problems))
    log.info(
        "target_applied",
        target=tp.target,
        changes=done[0],
        failed=len(failed),
        statements=statements,
        transactions=len(chunks),
    )
    not_done = [f"{tp.target}: {f.describe()}" for f in failed]
    return not_done + (execute_drops(tp.target, drops, target, ctx) if drops else [])


def _apply_transaction(
    name: str, changes: tuple[Change, ...], target: Target, ctx: RunContext, done: list[int], total: int
) -> ApplyResult:
    applied: list[Change] = []
    # each change's parts encoded once, for its line in the intent and for its own record
    texts = ChangeTexts()

    def on_change(change: Change) -> None:
        applied.append(change)
        done[0] += 1
        ctx.progress("changes applied", done[0], total)

    ctx.audit([intent_event(ctx, name, changes, texts)])
    error: BaseException | None = None
    failed: tuple[FailedChange, ...] = ()
    def on_begin(transaction: str | None) -> None:
        ctx.audit([begun_event(ctx, name, transaction)])

    try:
        result = target.apply(changes, on_change=on_change, on_begin=on_begin)
        failed = result.failed
    except BaseException as exc:
        error = exc
        raise
    finally:
        now = datetime.now(UTC)  # the records of what committed, written together at one time
        records: list[AuditEvent | Record] = [*_applied_records(ctx, name, applied, texts, now)]
        records += [_failed_event(ctx, name, f) for f in failed]
        records.append(completion_event(ctx, name, len(changes), len(applied), error, len(failed)))
        ctx.audit(records)
        # one line per change, only when kept; bound once (each call through the proxy binds anew)
        if applied and log.is_enabled_for(logging.INFO):
            bound = log.bind(target=name, run_id=ctx.run_id)
            for c in applied:
                bound.info("change_applied", change=c.describe(), reasons=[r.describe() for r in c.reasons])
        for f in failed:
            log.error("change_failed", target=name, change=f.change.describe(), error=f.error, run_id=ctx.run_id)
    return result


def _failed_event(ctx: RunContext, target: str, failure: FailedChange) -> AuditEvent:
    change = failure.change
    return ctx.event(
        EventKind.CHANGE_FAILED,
        target=target,
        role=change.role,
        change=change.to_json(),
        reason=failure.error,
        before=dict(change.before),
        after=dict(change.after),
    )


def _applied_records(
    ctx: RunContext, target: str, applied: Sequence[Change], texts: ChangeTexts, at: datetime
) -> list[Record]:
    """The ``change_applied`` record of each change (its rules and their attribute values as
    the reason), encoded with ``texts``, the transaction's (its intent's parts are reused)."""
    described: dict[int, tuple[object, str]] = {}  # one rule's memberships share their reasons tuple

    def reason(change: Change) -> str:
        hit = described.get(id(change.reasons))
        if hit is None:
            text = "; ".join(r.describe() for r in change.reasons)
            if ctx.reason:
                text = f"{text} | operator: {ctx.reason}" if text else f"operator: {ctx.reason}"
            hit = described[id(change.reasons)] = (change.reasons, text)
        return hit[1]

    return texts.records(
        EventKind.CHANGE_APPLIED.value, applied, reason, at.isoformat(), ctx.run_id, ctx.actor, ctx.trigger, target
    )
