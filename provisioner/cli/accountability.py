"""Who asked for a change, why, and on whose approval: checked before an apply, chained with it."""

from __future__ import annotations

from typing import Any

import click

from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.values.plan import Plan
from provisioner.engine.accountability import reason_problem
from provisioner.engine.context import RunContext


def require_reason(cfg: Config, reason: str) -> None:
    problem = reason_problem(cfg, reason)
    if problem is not None:
        raise click.UsageError(f"--reason: {problem}")


def authorisation(
    ctx: RunContext, saved: Plan | None, plan_path: str | None, approver: str | None
) -> AuditEvent:
    """The ``apply_authorised`` record: reason, approver, and the saved plan applied (digest, planning run)."""
    plan: dict[str, Any] | None = None
    if saved is not None:
        body = saved.to_json()
        plan = {
            "digest": body["plan_digest"],
            "planning_run": saved.meta.get("planning_run"),
            "planned_by": saved.meta.get("planned_by"),
            "created_at": body["created_at"],
            "file": plan_path,
        }
    return ctx.event(
        EventKind.AUTHORISED,
        reason=ctx.reason,
        after={"ticket": ctx.reason, "approver": approver, "saved_plan": plan},
    )


def check_approver(actor: str, approver: str | None) -> None:
    """Four eyes: the approver is someone else than the operator applying."""
    if approver is not None and approver.strip().casefold() in {a.casefold() for a in _names(actor)}:
        raise click.UsageError(f"--approved-by {approver!r} is the operator applying; an approver is someone else")


def _names(actor: str) -> set[str]:
    user, _, rest = actor.partition(" (")
    return {user.strip(), rest.rstrip(")").strip()} - {""}
