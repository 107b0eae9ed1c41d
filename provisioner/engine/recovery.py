"""Crash consistency of the audit trail: apply intents, completions, recovery.

Before a target's transaction the run appends an ``apply_intent`` record that
lists every change it is about to make; after the transaction (committed or
rolled back) it appends the ``change_applied`` records and an
``apply_completed`` record in one audit transaction.  A process that dies
between the target's commit and that append leaves an intent without a
completion.  The next apply finds it (``recover_interrupted``), re-reads the
target's catalog, and records each listed change the catalog shows as
``change_recovered``, then closes the intent with a completion marked
``recovered``.  See docs/audit.md.

Only what committed is credited: an ``apply_begun`` record, written once the
target holds its lock and before the first change, names the transaction about
to commit (PostgreSQL).  No such record: nothing committed.  A transaction the
server reports aborted: nothing committed, even when a later run has since made
the same changes (the catalog alone would credit them to the dead run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.governance.encode import ChangeTexts
from provisioner.core.reconcile.verify import verify
from provisioner.core.values.intent import intent_changes
from provisioner.core.values.plan import Change, Plan, readback_scope
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.logs import log
from provisioner.store.auditfilter import AuditFilter

WATERMARK = "audit:intent_watermark"


def planned_event(ctx: RunContext, plan: Plan, *, saved: bool = False) -> AuditEvent:
    """RUN_PLANNED: the plan's summary and every notice (drift, refused requests ...)."""
    notices = [{**n.to_json(), "target": tp.target} for tp in plan.targets for n in tp.notices]
    return ctx.event(
        EventKind.RUN_PLANNED,
        reason=ctx.reason,
        after={
            "saved_plan": saved,
            "identities": plan.identities_seen,
            "changes": len(plan.changes),
            "by_kind": plan.counts(),
            "fingerprints": {tp.target: tp.fingerprint for tp in plan.targets},
            "notices": notices,
            **{k: plan.meta[k] for k in ("short_circuit", "reused_actual") if k in plan.meta},
        },
    )


def intent_event(
    ctx: RunContext, target: str, changes: Sequence[Change], texts: ChangeTexts | None = None
) -> AuditEvent:
    """``texts``: the transaction's change texts, which its change records reuse.
    The changes are listed compactly (:mod:`provisioner.core.values.intent`)."""
    after = (texts if texts is not None else ChangeTexts()).intent(changes)
    return ctx.event(EventKind.APPLY_INTENT, target=target, reason=ctx.reason, after=after)


def begun_event(ctx: RunContext, target: str, transaction: str | None) -> AuditEvent:
    """Written after the target's lock is held and before the first change: without it,
    nothing of the intent can have committed."""
    return ctx.event(EventKind.APPLY_BEGUN, target=target, after={"transaction": transaction})


def completion_event(
    ctx: RunContext, target: str, intended: int, committed: int, error: BaseException | None, failed: int = 0
) -> AuditEvent:
    after: dict[str, Any] = {"intended": intended, "committed": committed}
    if failed:
        after["failed"] = failed
    if error is not None:
        after["error"] = type(error).__name__
    return ctx.event(EventKind.APPLY_COMPLETED, target=target, after=after)


def recover_interrupted(cfg: Config, ctx: RunContext, targets: Targets) -> int:
    """Close every interrupted apply intent; return how many were closed."""
    store = ctx.store
    if store is None:
        return 0
    watermark = int(store.get(WATERMARK, 0) or 0)
    pending = store.audit.unresolved_intents(watermark)
    grace = timedelta(seconds=cfg.audit.recover_after)
    closed, keep_from = 0, None
    for row in pending:
        content = row.content
        at = datetime.fromisoformat(str(content["at"]))
        if content["run_id"] == ctx.run_id or ctx.now - at < grace:
            keep_from = row.seq if keep_from is None else keep_from
            continue  # may still be running
        _recover(ctx, targets, row.seq, content)
        closed += 1
    head, _ = store.audit.head()
    store.put(WATERMARK, (keep_from - 1) if keep_from is not None else head)
    return closed


def _recover(ctx: RunContext, targets: Targets, seq: int, intent: dict[str, Any]) -> None:
    target = str(intent["target"])
    changes = intent_changes(intent.get("after") or {}, f"apply_intent seq {seq}")
    events: list[AuditEvent] = []
    status = "recovered"
    if target not in targets.names:
        status = "target no longer configured; not checked"
        committed: list[Change] = []
    else:
        status, committed = _committed(ctx, targets, target, seq, intent, changes)
    for change in committed:
        events.append(
            ctx.event(
                EventKind.CHANGE_RECOVERED,
                target=target,
                role=change.role,
                change=change.to_json(),
                reason="; ".join(r.describe() for r in change.reasons),
                before=dict(change.before),
                after={**dict(change.after), "recovered": True},
            )
        )
        events[-1] = _with_origin(events[-1], intent, seq)
    events.append(
        ctx.event(
            EventKind.APPLY_COMPLETED,
            target=target,
            reason=f"recovered intent seq {seq} of interrupted run {intent['run_id']}",
            after={
                "recovered": True,
                "status": status,
                "intent_seq": seq,
                "intent_run_id": intent["run_id"],
                "intended": len(changes),
                "committed": len(committed),
            },
        )
    )
    # the completion carries the interrupted run's id, so it resolves that run's intent
    last = events[-1]
    events[-1] = replace(last.with_after(recovered_by_run=ctx.run_id), run_id=str(intent["run_id"]))
    ctx.audit(events)
    log.warning(
        "apply_intent_recovered",
        target=target,
        intent_seq=seq,
        interrupted_run=intent["run_id"],
        intended=len(changes),
        committed=len(committed),
    )


def _begun(ctx: RunContext, seq: int, intent: dict[str, Any]) -> dict[str, Any] | None:
    """The ``apply_begun`` record that followed this intent (same run and target,
    before that run's next intent on the target), if the apply got that far."""
    assert ctx.store is not None
    for row in ctx.store.iter_audit(str(intent["run_id"])):
        content = row.content
        if row.seq <= seq or content.get("target") != intent["target"]:
            continue
        if content["kind"] == EventKind.APPLY_INTENT.value:
            return None
        if content["kind"] == EventKind.APPLY_BEGUN.value:
            return content
    return None


def _committed(
    ctx: RunContext, targets: Targets, target: str, seq: int, intent: dict[str, Any], changes: list[Change]
) -> tuple[str, list[Change]]:
    """What of the intent committed: nothing if the apply never held the lock; nothing
    if the target says its transaction did not commit; else what the catalog shows.
    (The catalog alone would credit what a later run committed.)"""
    begun = _begun(ctx, seq, intent)
    if begun is None:
        return "recovered: the apply never started (no apply_begun record); nothing committed", []
    transaction = (begun.get("after") or {}).get("transaction")
    handle = targets.get(target)
    proven = False  # the server says the transaction committed: everything the catalog shows is its
    if transaction:
        verdict = handle.committed(str(transaction))
        if verdict is False:
            return f"recovered: transaction {transaction} did not commit; nothing committed", []
        if verdict is None:
            status = f"recovered: transaction {transaction} is too old to check; credited from the catalog"
        else:
            status, proven = f"recovered: transaction {transaction} committed", True
    else:
        status = "recovered: statements commit one by one; credited from the catalog"
    state = handle.inspect(readback_scope(changes))
    shown = [c for c in changes if not verify((c,), state)]
    later = set() if proven else _made_later(ctx, seq, intent)
    credited = [c for c in shown if _key(c.to_json()) not in later]
    if len(credited) < len(shown):
        status += f"; {len(shown) - len(credited)} change(s) a later run recorded are not credited"
    return status, credited


def _key(change: Any) -> tuple[Any, ...]:
    """What identifies a change across runs (its marker and timestamps differ)."""
    if not isinstance(change, dict):
        return ()
    params = change.get("params") or {}
    return (change.get("kind"), change.get("role"), *(params.get(k) for k in ("group", "login", "old_name")))


def _made_later(ctx: RunContext, seq: int, intent: dict[str, Any]) -> set[tuple[Any, ...]]:
    """The changes another run recorded on the intent's target after it (applied or recovered):
    the catalog shows them, but they are not the interrupted run's (MariaDB, whose statements
    commit one by one, or a transaction too old to check)."""
    assert ctx.store is not None
    kinds = (EventKind.CHANGE_APPLIED.value, EventKind.CHANGE_RECOVERED.value)
    since = datetime.fromisoformat(str(intent["at"]))
    rows = ctx.store.audit.iter_rows(AuditFilter(target=str(intent["target"]), kinds=kinds, since=since))
    return {_key(r.content.get("change")) for r in rows if r.seq > seq and r.content.get("run_id") != intent["run_id"]}


def _with_origin(event: AuditEvent, intent: dict[str, Any], seq: int) -> AuditEvent:
    return event.with_after(intent_seq=seq, interrupted_run=intent["run_id"])
