"""Review exclusions: a reviewer's revoke of rule-based access, honoured by the rules.  Pure.

An access reviewer who revokes a membership the rules grant cannot change the
rule (it grants the same role to a whole desk).  The revoke becomes an
:class:`Exclusion`: for one identity (stable id) and one role, until an instant,
recorded with the campaign, item, reviewer and comment.  Desired-state
computation drops the membership while the exclusion holds, and records why in
:attr:`DesiredUser.excluded`, so the diff revokes it (whatever the drift
policy) and ``explain`` and the plan name the review decision.

An exclusion holds only while the grant rests on the same *basis* as when the
reviewer revoked it: the same rules matching on the same attribute values.
When a rule or the person's attributes change (a move to another desk, a new
rule), the exclusion lapses and the rules decide again: the reviewer certified
the access as it was, not whatever a future rule might grant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from provisioner.core.values.model import DesiredState, DesiredUser, Reason


def basis(rules: Iterable[str], attributes: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """What a rule-based grant rests on: the rules and the attribute values that matched."""
    return (*sorted({f"rule:{r}" for r in rules}), *sorted({f"{k}={v}" for k, v in attributes}))


def basis_of(reasons: Iterable[Reason]) -> tuple[str, ...]:
    reasons = tuple(reasons)
    return basis((r.rule for r in reasons), (a for r in reasons for a in r.attributes))


@dataclass(frozen=True, slots=True)
class Exclusion:
    """One recorded revoke of rule-based access: ``access`` withheld from ``stable_id`` until ``until``."""

    stable_id: str
    access: str
    until: datetime
    basis: tuple[str, ...]
    campaign: str
    item_id: str
    reviewer: str
    comment: str
    decided_at: str

    def holds(self, now: datetime) -> bool:
        return now < self.until

    def reason(self) -> Reason:
        return Reason(
            f"review-exclusion:{self.campaign}",
            f"revoked in access review {self.campaign} (item {self.item_id}) by {self.reviewer} on "
            f"{self.decided_at[:10]}: {self.comment}; excluded from the rules until {self.until.isoformat()}",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "stable_id": self.stable_id, "access": self.access, "until": self.until.isoformat(),
            "basis": list(self.basis), "campaign": self.campaign, "item_id": self.item_id,
            "reviewer": self.reviewer, "comment": self.comment, "decided_at": self.decided_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Exclusion:
        return cls(
            str(data["stable_id"]), str(data["access"]), datetime.fromisoformat(str(data["until"])),
            tuple(str(b) for b in data["basis"]), str(data["campaign"]), str(data["item_id"]),
            str(data["reviewer"]), str(data["comment"]), str(data["decided_at"]),
        )


def digest(exclusions: Sequence[Exclusion]) -> str:
    """What the exclusions in force contribute to a plan (for the daemon's no-op short-circuit)."""
    h = hashlib.sha256()
    for e in sorted(exclusions, key=lambda x: (x.stable_id, x.access, x.item_id)):
        h.update("\x1e".join((e.stable_id, e.access, e.until.isoformat(), *e.basis)).encode() + b"\x1d")
    return h.hexdigest()


def apply_exclusions(desired: DesiredState, exclusions: Sequence[Exclusion], now: datetime) -> DesiredState:
    """``desired`` without the memberships exclusions withhold (each recorded in
    ``DesiredUser.excluded``).  Users no exclusion touches stay the very same objects."""
    live: dict[str, list[Exclusion]] = {}
    for e in exclusions:
        if e.holds(now):
            live.setdefault(e.stable_id, []).append(e)
    if not live:
        return desired
    users: dict[str, DesiredUser] = dict(desired.users)
    changed = False
    for name, user in desired.users.items():
        mine = live.get(user.stable_id)
        if not mine:
            continue
        memberships = dict(user.memberships)
        excluded = dict(user.excluded)
        for e in mine:
            reasons = memberships.get(e.access)
            if reasons and basis_of(reasons) == e.basis:
                del memberships[e.access]
                excluded[e.access] = e.reason()
        if excluded != user.excluded:
            users[name] = replace(user, memberships=memberships, excluded=excluded)
            changed = True
    return replace(desired, users=users) if changed else desired
