"""The safety verdict on a plan: every safety-check violation and breaker trip, the audit
records they call for, and the refusal (a value: the caller raises it when it acts).

The checks themselves are pure (core/reconcile/safety.py, core/reconcile/breaker.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.reconcile.breaker import BreakerPolicy, BreakerTrip, check_breaker
from provisioner.core.reconcile.diff import DiffPolicy
from provisioner.core.reconcile.safety import check_plan
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Plan
from provisioner.engine.context import RunContext
from provisioner.errors import BreakerTripped, PlanError, ProvisionerError, SafetyViolation
from provisioner.logs import log


@dataclass(frozen=True, slots=True)
class Verdict:
    violations: tuple[str, ...]
    trips: tuple[BreakerTrip, ...]
    """Every breaker trip, an overridden one included."""
    overridden: bool
    """``--allow-mass-revocation --reason`` let the trips through."""
    events: tuple[AuditEvent, ...]
    """One ``breaker_tripped`` (or ``override``) record per trip."""
    refused: ProvisionerError | None

    def log(self, ctx: RunContext) -> None:
        for t in self.trips:
            log.warning("breaker_overridden" if self.overridden else "breaker_tripped", run_id=ctx.run_id,
                        **t.to_json())


def findings(
    cfg: Config, plan: Plan, actual: Mapping[str, ActualState], policies: Mapping[str, DiffPolicy]
) -> tuple[list[str], list[BreakerTrip]]:
    """Every safety-check violation and every breaker trip of ``plan``."""
    sc = cfg.safety
    breaker = BreakerPolicy(sc.max_revocation_share, sc.max_revocations, sc.max_mover_share, sc.max_movers)
    return check_plan(plan, actual, policies), check_breaker(plan, actual, breaker)


def refusal(violations: list[str], trips: list[BreakerTrip]) -> SafetyViolation | None:
    """Exit 3 when any safety check failed (breaker trips listed too), 4 for the breaker alone."""
    if violations:
        return SafetyViolation(violations + [t.message() for t in trips])
    return BreakerTripped([t.message() for t in trips]) if trips else None


def verdict(
    cfg: Config,
    plan: Plan,
    actual: Mapping[str, ActualState],
    policies: Mapping[str, DiffPolicy],
    ctx: RunContext,
) -> Verdict:
    """The checks of ``plan``; ``ctx.allow_mass_revocation`` (with a reason) overrides the
    breaker alone, never a safety-check violation."""
    violations, trips = findings(cfg, plan, actual, policies)
    if trips and ctx.allow_mass_revocation and not ctx.reason.strip():
        error = PlanError("--allow-mass-revocation needs --reason TEXT (recorded in the audit trail)")
        return Verdict(tuple(violations), tuple(trips), False, (), error)
    override = bool(trips) and ctx.allow_mass_revocation and not violations
    kind = EventKind.OVERRIDE if override else EventKind.BREAKER_TRIPPED
    events = tuple(
        ctx.event(kind, target=t.target, reason=(ctx.reason if override else "") or t.message(), after=t.to_json())
        for t in trips
    )
    refused = refusal(violations, [] if override else trips)
    return Verdict(tuple(violations), tuple(trips), override, events, refused)
