"""Dropping roles whose retention has passed (shell).

Each drop runs on its own, after the target's main transaction has committed,
so a drop that fails (an object the heir cannot take over, a database that
refuses the connection) never holds back a leaver's disable.  A failed drop
leaves the role disabled, marked and without memberships; the error is kept in
the state store and shown in every plan (notice ``drop_failed``) until a drop
succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.values.plan import Change
from provisioner.engine.context import RunContext
from provisioner.engine.health import drop_failures_key
from provisioner.errors import ApplyFailed
from provisioner.logs import log
from provisioner.targets.base import Target


def execute_drops(target_name: str, drops: Sequence[Change], target: Target, ctx: RunContext) -> list[str]:
    """Drop each role in turn; return one message per failed drop."""
    failures: dict[str, str] = {}
    for change in drops:
        applied: list[Change] = []
        try:
            target.apply([change], on_change=applied.append)
        except ApplyFailed as exc:
            failures[change.role] = str(exc)
            log.error("drop_failed", target=target_name, role=change.role, error=str(exc), run_id=ctx.run_id)
            ctx.audit([_event(ctx, target_name, change, EventKind.RUN_FAILED, f"drop failed: {exc}")])
            continue
        reason = "; ".join(r.describe() for r in change.reasons)
        ctx.audit([_event(ctx, target_name, c, EventKind.CHANGE_APPLIED, reason) for c in applied])
        log.info("change_applied", target=target_name, change=change.describe(), run_id=ctx.run_id)
    if ctx.store is not None:
        key = drop_failures_key(target_name)
        previous = ctx.store.get(key) or {}
        done = {c.role for c in drops} - set(failures)
        kept = {role: msg for role, msg in dict(previous).items() if role not in done}
        kept.update(failures)
        if kept != previous:
            ctx.store.put(key, kept)
    return [f"{target_name}: drop role {role}: {msg}" for role, msg in sorted(failures.items())]


def _event(ctx: RunContext, target: str, change: Change, kind: EventKind, reason: str) -> AuditEvent:
    if ctx.reason:
        reason = f"{reason} | operator: {ctx.reason}"
    return ctx.event(
        kind,
        target=target,
        role=change.role,
        change=change.to_json(),
        reason=reason,
        before=dict(change.before),
        after=dict(change.after) if kind is EventKind.CHANGE_APPLIED else {},
    )
