"""The mass-revocation circuit breaker.  Pure: counts on a finished plan.

Every change that ends or limits access counts (:func:`provisioner.core.reconcile.phases.removes_access`):
NOLOGIN, an earlier ``VALID UNTIL`` (a leave date set in advance), ending
sessions, revoking a membership or a privilege.  Each affected role of a target
is counted once, as one of two kinds:

* a **leaver**: the plan ends its login (NOLOGIN, or VALID UNTIL set or brought
  forward) or ends its sessions;
* a **mover**: the plan only revokes (memberships, privileges), whether or not
  it also grants something new.

Each kind has its own limit: the smaller of a share of the target's managed
identities and a count.  A plan over either limit is refused as a whole before
any statement runs.  Dropping a role whose retention has passed removes no
access (it is already disabled and has no memberships) and is not counted.
The arithmetic for a large firm is in docs/lifecycle.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from provisioner.core.reconcile.phases import ends_login, limits_validity, removes_access
from provisioner.core.values.model import ActualState, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Plan, TargetPlan


class Affected(StrEnum):
    LEAVERS = "leavers"
    MOVERS = "movers"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    max_share: float = 0.2
    """Leavers: share of the target's managed identities (0..1)."""
    max_count: int = 5000
    """Leavers: most per run."""
    max_mover_share: float = 0.25
    max_movers: int = 25000

    def limit(self, kind: Affected, managed: int) -> float:
        if kind is Affected.LEAVERS:
            return min(float(self.max_count), self.max_share * managed)
        return min(float(self.max_movers), self.max_mover_share * managed)


SETTINGS = {
    Affected.LEAVERS: "[safety] max_revocation_share / max_revocations",
    Affected.MOVERS: "[safety] max_mover_share / max_movers",
}


@dataclass(frozen=True, slots=True)
class BreakerTrip:
    target: str
    affected: int
    """Managed roles of this kind that would lose access."""
    managed: int
    """Managed login roles on the target before the run."""
    limit: float
    kind: Affected = Affected.LEAVERS

    def message(self) -> str:
        what = "ends or limits the login of" if self.kind is Affected.LEAVERS else "revokes access from"
        return (
            f"{self.target}: mass-revocation breaker: the plan {what} {self.affected} of {self.managed} "
            f"managed identities ({self.kind.value}), more than the limit of {self.limit:g} "
            f"({SETTINGS[self.kind]}); nothing applied. The next run within the limits proceeds. "
            "Check the sources; override once with: apply --allow-mass-revocation --reason TEXT"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "kind": self.kind.value,
            "affected": self.affected,
            "managed": self.managed,
            "limit": self.limit,
        }


def takes_access(change: Change) -> bool:
    """The change ends or limits access (VALID UNTIL included)."""
    return removes_access(change)


def _ends(change: Change) -> bool:
    return ends_login(change) or limits_validity(change) or change.kind is ChangeKind.TERMINATE_SESSIONS


def affected_roles(tp: TargetPlan) -> dict[Affected, set[str]]:
    """Per kind, the roles whose access the plan ends (leavers) or reduces (movers)."""
    leavers = {c.role for c in tp.changes if _ends(c)}
    movers = {c.role for c in tp.changes if takes_access(c)} - leavers
    return {Affected.LEAVERS: leavers, Affected.MOVERS: movers}


def managed_identities(state: ActualState, sources: Collection[str] = ()) -> int:
    """Managed login roles on the target (of ``sources`` when given: the ones this run reads)."""
    return sum(
        1
        for r in state.roles.values()
        if r.marker is not None and r.marker.kind is RoleKind.USER and (not sources or r.marker.source in sources)
    )


def check_breaker(plan: Plan, actual: Mapping[str, ActualState], policy: BreakerPolicy) -> list[BreakerTrip]:
    """One trip per target and kind whose plan takes away too much; empty when the plan may run."""
    trips = []
    for tp in plan.targets:
        state = actual.get(tp.target)
        if state is None:
            continue
        by_kind = affected_roles(tp)
        if not any(by_kind.values()):
            continue
        managed = managed_identities(state, plan.sources)
        for kind, roles in by_kind.items():
            limit = policy.limit(kind, managed)
            if len(roles) > limit:
                trips.append(BreakerTrip(tp.target, len(roles), managed, limit, kind))
    return trips
