"""The mass-revocation circuit breaker.  Pure: counts on a finished plan.

A run that would take access away from more managed identities than the
configured share or count (whichever is smaller) of one target is refused as
a whole before any statement runs.  Dropping a role whose retention has passed
removes no access (it is already disabled and has no memberships) and is not
counted; disabling a login, terminating its sessions or revoking a membership is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from provisioner.core.model import ActualState, RoleKind
from provisioner.core.plan import Change, ChangeKind, Plan, TargetPlan


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    max_share: float = 0.2
    """Share of the target's managed identities (0..1)."""
    max_count: int = 500


@dataclass(frozen=True, slots=True)
class BreakerTrip:
    target: str
    affected: int
    """Managed roles that would lose access."""
    managed: int
    """Managed login roles on the target before the run."""
    limit: float

    def message(self) -> str:
        return (
            f"{self.target}: mass-revocation breaker: the plan takes access away from {self.affected} "
            f"of {self.managed} managed identities, more than the limit of {self.limit:g} "
            "([safety] max_revocation_share / max_revocations); nothing applied. "
            "Check the sources; override once with: apply --allow-mass-revocation --reason TEXT"
        )

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "affected": self.affected, "managed": self.managed, "limit": self.limit}


def takes_access(change: Change) -> bool:
    if change.kind in (ChangeKind.REVOKE_MEMBERSHIP, ChangeKind.REVOKE_PRIVILEGE, ChangeKind.TERMINATE_SESSIONS):
        return True
    return change.kind is ChangeKind.ALTER_ROLE and change.param("login", True) is False


def affected_roles(tp: TargetPlan) -> set[str]:
    return {c.role for c in tp.changes if takes_access(c)}


def managed_identities(state: ActualState, sources: Collection[str] = ()) -> int:
    """Managed login roles on the target (of ``sources`` when given: the ones this run reads)."""
    return sum(
        1
        for r in state.roles.values()
        if r.marker is not None and r.marker.kind is RoleKind.USER and (not sources or r.marker.source in sources)
    )


def check_breaker(plan: Plan, actual: Mapping[str, ActualState], policy: BreakerPolicy) -> list[BreakerTrip]:
    """One trip per target whose plan revokes too much; empty when the plan may run."""
    trips = []
    for tp in plan.targets:
        state = actual.get(tp.target)
        affected = len(affected_roles(tp))
        if state is None or not affected:
            continue
        managed = managed_identities(state, plan.sources)
        limit = min(float(policy.max_count), policy.max_share * managed)
        if affected > limit:
            trips.append(BreakerTrip(tp.target, affected, managed, limit))
    return trips
