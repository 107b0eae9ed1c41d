"""Access reviews (certification campaigns).  Pure.

A campaign freezes, per target, every membership of every login role as a
:class:`ReviewItem` (provenance, sensitivity, SoD flags, when granted), assigns
it to a reviewer, signs it (HMAC, key derived from a per-campaign secret) so a
worksheet row cannot be edited unnoticed, validates imported decisions
all-or-nothing, and turns revoke decisions into plan changes.  See
``docs/reviews.md``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from provisioner.core.ownership.ledger import is_foreign
from provisioner.core.privileges.catalog import Catalog
from provisioner.core.values.model import ActualState, DesiredState, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, make_change

ReviewerMode = Literal["manager", "owner"]
DECISIONS = ("keep", "revoke")
UNASSIGNED = "unassigned"
FINAL = ("revoked", "already gone")
"""Outcomes after which an item's decision is settled (a flagged revoke is retried)."""
SIGNED = ("campaign", "item_id", "target", "identity", "role", "access", "reviewer")
"""The columns an item's signature covers (a worksheet row must keep them as exported)."""
COLUMNS = (
    "item_id", "campaign", "reviewer", "target", "identity", "role", "access", "description",
    "sensitivity", "provenance", "rules", "sod", "granted_at", "decision", "comment", "signature",
)


def campaign_for(now: datetime, cadence: str = "quarterly") -> str:
    """``2026-Q4`` (quarterly), ``2026-11`` (monthly) or ``2026`` (yearly)."""
    if cadence == "monthly":
        return f"{now.year}-{now.month:02d}"
    if cadence == "yearly":
        return f"{now.year}"
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def item_id(campaign: str, target: str, role: str, access: str) -> str:
    blob = "\x1f".join((campaign, target, role, access)).encode()
    return "i-" + hashlib.sha256(blob).hexdigest()[:16]


def derive_key(secret: bytes, campaign: str) -> bytes:
    return hmac.new(secret, b"provisioner-review-item-v1\x1f" + campaign.encode(), hashlib.sha256).digest()


def sign(values: Mapping[str, str], key: bytes) -> str:
    blob = "\x1f".join(str(values.get(k, "")) for k in SIGNED).encode()
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Person:
    """What a review needs to know about the identity behind a login role."""

    username: str
    stable_id: str
    manager: str | None = None
    """the manager's username, resolved from the directory"""


@dataclass(frozen=True, slots=True)
class ReviewItem:
    campaign: str
    item_id: str
    target: str
    identity: str
    stable_id: str
    role: str
    """the login role"""
    access: str
    """the role it is a member of (what is reviewed)"""
    description: str
    sensitivity: str
    provenance: str
    """``rule`` or ``out-of-band``"""
    rules: tuple[str, ...]
    attributes: tuple[tuple[str, str], ...]
    sod: tuple[str, ...]
    granted_at: str
    reviewer: str
    signature: str = ""

    def signed_values(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in SIGNED}

    def row(self) -> dict[str, str]:
        """The worksheet row (decision and comment blank)."""
        return {
            "item_id": self.item_id,
            "campaign": self.campaign,
            "reviewer": self.reviewer,
            "target": self.target,
            "identity": self.identity,
            "role": self.role,
            "access": self.access,
            "description": self.description,
            "sensitivity": self.sensitivity,
            "provenance": self.provenance + (": " + ", ".join(self.rules) if self.rules else ""),
            "rules": "; ".join(f"{k}={v}" for k, v in self.attributes),
            "sod": ", ".join(self.sod),
            "granted_at": self.granted_at,
            "decision": "",
            "comment": "",
            "signature": self.signature,
        }

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["rules"], data["sod"] = list(self.rules), list(self.sod)
        data["attributes"] = [list(a) for a in self.attributes]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewItem:
        values = dict(data)
        values["rules"], values["sod"] = tuple(data["rules"]), tuple(data["sod"])
        values["attributes"] = tuple((str(a[0]), str(a[1])) for a in data["attributes"])
        return cls(**values)


NOT_RECORDED = "not granted by provisioner (date unknown)"
"""``granted_at`` of a membership no audit record grants: a hand grant, before or after provisioner came."""


def assign(mode: ReviewerMode, person: Person | None, access: str, catalog: Catalog) -> str:
    """The identity's manager (mode ``manager``) or the role owner (``owner``), each falling back to the other."""
    owner = catalog.roles[access].owner if access in catalog.roles else None
    manager = person.manager if person else None
    first, second = (manager, owner) if mode == "manager" else (owner, manager)
    return first or second or UNASSIGNED


def build_items(
    campaign: str,
    actual: Mapping[str, ActualState],
    desired: DesiredState,
    people: Mapping[str, Person],
    catalog: Catalog,
    sod_flags: Mapping[tuple[str, str, str], Sequence[str]],
    granted_at: Mapping[tuple[str, str, str], str],
    mode: ReviewerMode,
    key: bytes,
    instance: str | None = None,
) -> tuple[ReviewItem, ...]:
    """One signed item per membership of every login role on every target: every
    membership of the login roles provisioner manages for these sources, and the
    memberships of hand-made login roles in roles the rules or the catalog know.

    ``people``: login role name -> person; ``sod_flags`` and ``granted_at`` are
    keyed by (target, login role, access). ``instance``: this installation; roles
    another installation manages on a shared server are its campaign's, not this one's,
    and a role is attributed to the identity of that name only when its marker names
    that identity's stable id (a reused username is not the leaver's reviewer subject)."""
    items: list[ReviewItem] = []
    known = frozenset(desired.groups) | frozenset(catalog.roles)
    for target in sorted(actual):
        state = actual[target]
        for name in sorted(state.roles):
            role = state.roles[name]
            if role.system or name == state.session_role:
                continue
            marker = role.marker
            if is_foreign(marker, instance):
                continue
            if marker is not None and marker.kind is RoleKind.USER and marker.source in desired.sources:
                accesses = role.member_of  # an identity provisioner manages: everything it holds
            elif marker is None and role.login:
                accesses = role.member_of & known  # a hand-made login: the business roles it holds
            else:
                continue
            wanted = desired.users.get(name)
            person = people.get(name)
            if marker is not None and wanted is not None and wanted.stable_id != marker.stable_id:
                wanted = person = None  # the name is someone else's now: the role's owner has left
            elif marker is None:
                wanted = None  # a hand-made login: no rule ever gave it anything (the person still reviews)
            for access in sorted(accesses):
                reasons: tuple[Reason, ...] = wanted.memberships.get(access, ()) if wanted else ()
                k = (target, name, access)
                entry = catalog.roles.get(access)
                item = ReviewItem(
                    campaign=campaign,
                    item_id=item_id(campaign, target, name, access),
                    target=target,
                    identity=person.username if person else name,
                    stable_id=person.stable_id if person else "",
                    role=name,
                    access=access,
                    description=entry.description if entry else "",
                    sensitivity=catalog.sensitivity(access).name.lower(),
                    provenance="rule" if reasons else "out-of-band",
                    rules=tuple(dict.fromkeys(r.rule for r in reasons)),
                    attributes=tuple(dict.fromkeys(a for r in reasons for a in r.attributes)),
                    sod=tuple(sorted(set(sod_flags.get(k, ())))),
                    granted_at=granted_at.get(k, NOT_RECORDED),
                    reviewer=assign(mode, person, access, catalog),
                )
                items.append(_signed(item, key))
    return tuple(items)


def _signed(item: ReviewItem, key: bytes) -> ReviewItem:
    return replace(item, signature=sign(item.signed_values(), key))


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    item_id: str
    decision: str
    comment: str
    reviewer: str
    line: int


def validate_rows(
    rows: Sequence[tuple[int, Mapping[str, str]]],
    items: Mapping[str, ReviewItem],
    key: bytes,
    campaign: str,
    reviewer: str | None = None,
    delegations: Mapping[str, str] | None = None,
    unresolved: frozenset[str] = frozenset(),
) -> tuple[list[Decision], list[str]]:
    """Check every row of one worksheet; return the decisions and every problem
    (``line N: ...``).  Any problem means nothing of the file may be imported.
    Rows with an empty decision are left open.  ``delegations``: reviewer -> delegate."""
    problems: list[str] = []
    decisions: list[Decision] = []
    seen: dict[str, int] = {}
    who = reviewer or next((r.get("reviewer", "") for _, r in rows), "")
    for line, row in rows:
        where = f"line {line}"
        iid = (row.get("item_id") or "").strip()
        item = items.get(iid)
        if item is None:
            problems.append(f"{where}: unknown item id {iid!r} (not in campaign {campaign})")
            continue
        if iid in seen:
            problems.append(f"{where}: item {iid} appears twice (first at line {seen[iid]})")
            continue
        seen[iid] = line
        changed = [k for k in SIGNED if (row.get(k) or "") != item.signed_values()[k]]
        if changed:
            detail = ", ".join(f"{k} {item.signed_values()[k]!r} -> {row.get(k)!r}" for k in changed)
            problems.append(f"{where}: item {iid}: tampered row: column(s) changed from the export ({detail})")
            continue
        expected = sign(item.signed_values(), key)
        if not hmac.compare_digest(item.signature, expected):
            problems.append(f"{where}: item {iid}: the stored item does not match its signature (state store edited)")
            continue
        if not hmac.compare_digest((row.get("signature") or "").strip(), expected):
            problems.append(f"{where}: item {iid}: tampered row: signature does not match")
            continue
        decision = (row.get("decision") or "").strip().lower()
        comment = (row.get("comment") or "").strip()
        problem = decision_problem(item, who, decision, comment, delegations or {}, unresolved)
        if problem:
            problems.append(f"{where}: item {iid}{problem}")
            continue
        if decision:
            decisions.append(Decision(iid, decision, comment, who, line))
    return decisions, problems


def assignee(item: ReviewItem, delegations: Mapping[str, str]) -> str:
    """Who decides ``item``: its reviewer, or the delegate the reviewer (or the campaign owner) named."""
    return delegations.get(item.reviewer, item.reviewer)


def self_review(item: ReviewItem, who: str) -> bool:
    """``who`` would review their own access (the identity under review, or its login role)."""
    me = who.casefold()
    return bool(me) and me in (item.identity.casefold(), item.role.casefold(), item.stable_id.casefold())


def decision_problem(
    item: ReviewItem,
    who: str,
    decision: str,
    comment: str,
    delegations: Mapping[str, str],
    unresolved: frozenset[str] = frozenset(),
) -> str:
    """Why ``who`` may not record ``decision`` on ``item`` (``: ...`` / `` is ...``), or empty.
    ``unresolved``: reviewer names that are no person in the directory (a job title as role owner)."""
    owner = assignee(item, delegations)
    if owner == UNASSIGNED:
        return " is unassigned: nobody may decide it until a campaign owner reassigns it to a reviewer"
    if owner.casefold() != who.casefold():
        return f" is assigned to {owner!r}, not to {who!r}"
    if owner in unresolved:
        return (f" is assigned to {owner!r}, which is no person in the directory: a campaign owner must "
                "reassign it to a reviewer")
    if decision and self_review(item, who):
        return f": self-review refused: {who!r} may not decide on their own access ({item.access})"
    if decision not in ("", *DECISIONS):
        return f": decision {decision!r} is not keep, revoke or empty"
    if decision == "revoke" and not comment:
        return ": a revoke decision needs a comment (why)"
    return ""


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class ItemState:
    """An item with its decision and what became of it."""

    item: ReviewItem
    decision: str = ""
    comment: str = ""
    decided_by: str = ""
    decided_at: str = ""
    outcome: str = ""
    """``revoked``, ``needs rule change or exception``, ``already gone`` or empty."""
    outcome_detail: str = ""
    audit_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Revocations:
    changes: Mapping[str, tuple[Change, ...]]
    """per target"""
    flagged: Mapping[str, str] = field(default_factory=dict)
    """item id -> why it is not revoked"""
    gone: tuple[str, ...] = ()
    """item ids whose access is already gone"""


def review_reason(campaign: str, reviewer: str, comment: str) -> Reason:
    return Reason(f"review:{campaign}", f"access review {campaign}, reviewer {reviewer}: {comment}")


def revocations(
    states: Sequence[ItemState], desired: DesiredState, actual: Mapping[str, ActualState]
) -> Revocations:
    """REVOKE_MEMBERSHIP changes for every pending revoke decision.  A membership
    the rules still grant is flagged, not revoked (the next run would grant it again)."""
    changes: dict[str, list[Change]] = {}
    flagged: dict[str, str] = {}
    gone: list[str] = []
    for st in states:
        item = st.item
        if st.decision != "revoke" or st.outcome in FINAL:
            continue
        state = actual.get(item.target)
        role = state.roles.get(item.role) if state else None
        if role is None or item.access not in role.member_of:
            gone.append(item.item_id)
            continue
        wanted = desired.users.get(item.role)
        if role.marker is None or (wanted is not None and role.marker.stable_id != wanted.stable_id):
            wanted = None  # not this identity's managed role: no rule gives it anything
        reasons = wanted.memberships.get(item.access, ()) if wanted else ()
        if reasons:
            rules = ", ".join(dict.fromkeys(r.rule for r in reasons))
            flagged[item.item_id] = (
                f"granted by rule(s) {rules}: the next run would grant it again; change the rule "
                f"or record an exception"
            )
            continue
        reason = review_reason(item.campaign, st.decided_by or item.reviewer, st.comment)
        changes.setdefault(item.target, []).append(
            make_change(
                ChangeKind.REVOKE_MEMBERSHIP, item.role, [reason], group=item.access,
                before={"member": True}, after={"member": False},
            )
        )
    return Revocations({t: tuple(c) for t, c in changes.items()}, flagged, tuple(gone))


def coverage(states: Sequence[ItemState]) -> list[dict[str, Any]]:
    """Per reviewer: items, decided, kept, revoked, open."""
    out: dict[str, dict[str, Any]] = {}
    for st in states:
        row = out.setdefault(
            st.item.reviewer,
            {"reviewer": st.item.reviewer, "items": 0, "decided": 0, "keep": 0, "revoke": 0, "open": 0},
        )
        row["items"] += 1
        if st.decision:
            row["decided"] += 1
            row[st.decision] += 1
        else:
            row["open"] += 1
    return [out[k] for k in sorted(out)]
