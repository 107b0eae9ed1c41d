"""Segregation of duties on effective access: detection and prevention.  Pure.

Effective access of a login role on one target = the roles it is a member of
(directly, by rule or by hand), every role those include (PostgreSQL
membership of group roles and catalog ``inherits``), and the privileges of all
of them (catalog privileges and privileges read from the target).

* :func:`detect` lists conflicts present in a target now (the detective control).
* :func:`enforce_sod` removes from a plan every grant that would create a new
  conflict (the preventive control): the NEW access is withheld, the rest of
  the person's plan and their existing access are left as they are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from provisioner.core.governance.sod import Policy, Side, SodException
from provisioner.core.ownership.ledger import is_foreign
from provisioner.core.values.model import ActualState, DesiredState, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Notice, NoticeLevel, Plan, TargetPlan, make_change


@dataclass(frozen=True, slots=True)
class PrivFact:
    """``privilege`` on ``schema.table`` (``table == "*"``: every table of the schema)."""

    privilege: str
    schema: str
    table: str
    because: str


class AccessModel(Protocol):
    """What the role catalog says a role includes and may do (issue 7's privilege model, adapted)."""

    def parents(self, role: str) -> tuple[str, ...]: ...

    def privileges(self, role: str) -> tuple[PrivFact, ...]: ...


class RolesOnly:
    """An :class:`AccessModel` without catalog inheritance or privileges."""

    def parents(self, role: str) -> tuple[str, ...]:
        return ()

    def privileges(self, role: str) -> tuple[PrivFact, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Holding:
    """How a login role holds one side: ``path`` runs from a role it was
    granted (whose provenance is ``cause``) to the role that satisfies the side."""

    side: Side
    path: tuple[str, ...]
    cause: str
    detail: str = ""

    def describe(self) -> str:
        what = f" ({self.detail})" if self.detail else ""
        if not self.path:
            return f"{self.side.describe()} on the login role itself{what} [{self.cause}]"
        if self.side.is_role and len(self.path) == 1:
            return f"{self.side.describe()}{what} [{self.cause}]"
        return f"{self.side.describe()} via {' -> '.join(self.path)}{what} [{self.cause}]"

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side.describe(), "path": list(self.path), "cause": self.cause, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Conflict:
    target: str
    user: str
    """the login role"""
    username: str
    stable_id: str
    policy: Policy
    holdings: tuple[Holding, ...]
    exception: SodException | None = None
    """an active exception covering this conflict"""
    expired: tuple[SodException, ...] = ()
    withheld: tuple[str, ...] = ()
    """preventive: the grants removed from the plan"""

    @property
    def sides(self) -> tuple[Side, ...]:
        return tuple(sorted({h.side for h in self.holdings}))

    def describe(self) -> str:
        held = "; ".join(h.describe() for h in self.holdings)
        who = f"{self.username} ({self.user})" if self.username != self.user else self.user
        text = f"SoD policy {self.policy.id!r} ({self.policy.severity}): {who} "
        if self.withheld:
            text += f"would hold {held}. Grant of {', '.join(self.withheld)} withheld; existing access unchanged"
        else:
            text += f"holds {held}"
        if self.exception is not None:
            text += f". Covered by {self.exception.describe()}"
        for exc in self.expired:
            text += f". Exception EXPIRED on {exc.expires.isoformat()} ({exc.file}:{exc.line})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "user": self.user,
            "identity": self.username,
            "stable_id": self.stable_id,
            "policy": self.policy.id,
            "severity": self.policy.severity,
            "description": self.policy.description,
            "holdings": [h.to_json() for h in self.holdings],
            "exception": self.exception.to_json() if self.exception else None,
            "expired_exceptions": [e.to_json() for e in self.expired],
            "withheld": list(self.withheld),
        }


@dataclass(frozen=True, slots=True)
class _Who:
    user: str
    username: str
    stable_id: str
    rules: Mapping[str, tuple[Reason, ...]] = field(default_factory=dict)
    by_name: bool = True
    """Exceptions naming ``username`` apply (False: the name is someone else's now)."""


# --------------------------------------------------------------------------- effective access


def actual_privileges(state: ActualState) -> dict[str, tuple[PrivFact, ...]]:
    """Table privileges read from the target, per grantee (empty when not read)."""
    snap = getattr(state, "privileges", None)
    out: dict[str, list[PrivFact]] = {}
    for g in getattr(snap, "grants", ()) or ():
        obj = g.obj
        if obj.kind in ("table", "column"):
            what = f"{g.privilege} on {obj.schema}.{obj.name} granted in the database"
            out.setdefault(g.role, []).append(PrivFact(g.privilege, obj.schema, obj.name, what))
    return {k: tuple(v) for k, v in out.items()}


def closure(starts: Iterable[str], state: ActualState, model: AccessModel) -> dict[str, tuple[str, ...]]:
    """Every role reachable from ``starts`` with the shortest path to it."""
    out: dict[str, tuple[str, ...]] = {}
    queue: deque[str] = deque()
    for role in sorted(set(starts)):
        out[role] = (role,)
        queue.append(role)
    while queue:
        current = queue.popleft()
        held = state.roles.get(current)
        for nxt in sorted(set(held.member_of if held else ()) | set(model.parents(current))):
            if nxt not in out:
                out[nxt] = (*out[current], nxt)
                queue.append(nxt)
    return out


def _covers(fact: PrivFact, side: Side) -> bool:
    return fact.privilege == side.privilege and fact.schema == side.schema and fact.table in (side.table, "*")


def holdings(
    user: str,
    granted: Mapping[str, str],
    sides: Sequence[Side],
    state: ActualState,
    model: AccessModel,
    direct_privs: Mapping[str, tuple[PrivFact, ...]],
    include_own: bool = True,
) -> list[Holding]:
    """The sides of ``sides`` held through the roles in ``granted`` (role -> cause)."""
    out: list[Holding] = []
    paths = closure(granted, state, model)
    for side in sides:
        if side.is_role:
            path = paths.get(side.role)
            if path is not None:
                out.append(Holding(side, path, granted[path[0]]))
            continue
        for role, path in sorted(paths.items(), key=lambda kv: (len(kv[1]), kv[0])):
            catalog = model.privileges(role) if state.capabilities.object_privileges else ()  # else never applied
            fact = next((f for f in (*catalog, *direct_privs.get(role, ())) if _covers(f, side)), None)
            if fact is not None:
                out.append(Holding(side, path, granted[path[0]], fact.because))
                break
        else:
            own = next((f for f in direct_privs.get(user, ()) if _covers(f, side)), None) if include_own else None
            if own is not None:
                out.append(Holding(side, (), "out-of-band privilege granted to the login role", own.because))
    return out


def _cause(who: _Who, group: str, planned: bool = False) -> str:
    reasons = who.rules.get(group)
    if not reasons:
        return "out-of-band grant (no rule grants it)"
    text = "; ".join(r.describe() for r in reasons)
    return f"planned this run by rule {text}" if planned else f"rule {text}"


def _exceptions(
    policy: Policy, who: _Who, exceptions: Sequence[SodException], now: datetime
) -> tuple[SodException | None, tuple[SodException, ...]]:
    name = who.username if who.by_name else ""
    mine = [e for e in exceptions if e.policy == policy.id and e.applies_to(name, who.stable_id)]
    active = next((e for e in sorted(mine, key=lambda e: e.expires, reverse=True) if e.active(now)), None)
    expired = tuple(e for e in mine if not e.active(now)) if active is None else ()
    return active, expired


def _who(user: str, state: ActualState, desired: DesiredState) -> _Who:
    """Whose login ``user`` is: the identity of that name only when the role's marker names
    that identity's stable id (a reused username is not the leaver's), as reviews attribute it."""
    d = desired.users.get(user)
    role = state.roles.get(user)
    marker = role.marker if role is not None else None
    stable = marker.stable_id if marker is not None and marker.stable_id else ""
    if d is not None and role is not None and marker is None:
        return _Who(user, d.username, d.stable_id)  # a hand-made login: no rule gave it anything
    if d is not None and (not stable or stable == d.stable_id):
        return _Who(user, d.username, d.stable_id, d.memberships)
    return _Who(user, user, stable, by_name=d is None)


def _subjects(state: ActualState, instance: str | None = None) -> list[str]:
    """This installation's managed logins and the hand-made (unmarked) ones; another
    installation's roles on a shared server are its own report's (``instance``)."""
    out = []
    for name, role in sorted(state.roles.items()):
        if role.system or name == state.session_role or is_foreign(role.marker, instance):
            continue  # the provisioner's own account administers roles (MariaDB: WITH ADMIN OPTION)
        user = role.marker is not None and role.marker.kind is RoleKind.USER
        if user or (role.login and role.marker is None):
            out.append(name)
    return out


# --------------------------------------------------------------------------- detective


def detect(
    desired: DesiredState,
    state: ActualState,
    policies: Sequence[Policy],
    exceptions: Sequence[SodException],
    model: AccessModel,
    now: datetime,
    instance: str | None = None,
) -> list[Conflict]:
    """Every conflict present in ``state`` now, covered by an exception or not (``instance``:
    this installation; another's roles are left out)."""
    active = [p for p in policies if p.enabled]
    if not active:
        return []
    privs = actual_privileges(state)
    out: list[Conflict] = []
    for user in _subjects(state, instance):
        who = _who(user, state, desired)
        granted = {g: _cause(who, g) for g in state.roles[user].member_of}
        for policy in active:
            held = holdings(user, granted, policy.sides, state, model, privs)
            if len({h.side for h in held}) < 2:
                continue
            exc, expired = _exceptions(policy, who, exceptions, now)
            out.append(Conflict(state.target, user, who.username, who.stable_id, policy, tuple(held), exc, expired))
    return out


def conflict_notice(c: Conflict) -> Notice:
    if c.exception is not None:
        return Notice(NoticeLevel.INFO, "sod_exception", c.describe(), c.user)
    return Notice(NoticeLevel.WARNING, "sod_conflict", c.describe(), c.user)


# --------------------------------------------------------------------------- preventive


def _planned(tp: TargetPlan) -> tuple[dict[str, dict[str, Change]], dict[str, set[str]], dict[str, str]]:
    grants: dict[str, dict[str, Change]] = {}
    revokes: dict[str, set[str]] = {}
    renamed: dict[str, str] = {}
    for c in tp.changes:
        if c.kind is ChangeKind.GRANT_MEMBERSHIP:
            grants.setdefault(c.role, {})[str(c.param("group"))] = c
        elif c.kind is ChangeKind.REVOKE_MEMBERSHIP:
            revokes.setdefault(c.role, set()).add(str(c.param("group")))
        elif c.kind is ChangeKind.RENAME_ROLE:
            renamed[c.role] = str(c.param("old_name"))
    return grants, revokes, renamed


def prevent(
    tp: TargetPlan,
    desired: DesiredState,
    state: ActualState,
    policies: Sequence[Policy],
    exceptions: Sequence[SodException],
    model: AccessModel,
    now: datetime,
) -> list[Conflict]:
    """The conflicts the grants of ``tp`` would create, each naming the grants to withhold
    (or, with ``exception`` set, the grants an active exception lets through).

    A grant is withheld when it adds a side of a policy and the person would
    then hold two or more sides (counting access kept after this plan's revokes)."""
    grants, revokes, renamed = _planned(tp)
    privs = actual_privileges(state)
    out: list[Conflict] = []
    for user in sorted(grants):
        who = _who(user, state, desired)
        current = state.roles.get(renamed.get(user, user))
        kept = set(current.member_of if current else ()) - revokes.get(user, set())
        kept_causes = {g: _cause(who, g) for g in kept}
        for policy in (p for p in policies if p.enabled):
            exc, expired = _exceptions(policy, who, exceptions, now)
            base = holdings(user, kept_causes, policy.sides, state, model, privs)
            have = {h.side for h in base}
            added: dict[str, list[Holding]] = {}
            for group in sorted(grants[user]):
                new = holdings(user, {group: _cause(who, group, True)}, policy.sides, state, model, privs, False)
                extra = [h for h in new if h.side not in have]
                if extra:
                    added[group] = extra
            total = have | {h.side for hs in added.values() for h in hs}
            if added and len(total) >= 2:
                firsts: dict[Side, Holding] = {}
                for h in [*base, *(h for hs in added.values() for h in hs)]:
                    firsts.setdefault(h.side, h)
                out.append(
                    Conflict(
                        tp.target, user, who.username, who.stable_id, policy,
                        tuple(firsts[s] for s in sorted(firsts)), exc, expired, tuple(sorted(added)),
                    )
                )
    return out


def enforce_sod(
    plan: Plan,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    policies: Sequence[Policy],
    exceptions: Sequence[SodException],
    model: AccessModel,
    now: datetime,
    instance: str | None = None,
) -> tuple[Plan, tuple[Conflict, ...]]:
    """Withhold conflicting grants (error notice ``sod_violation`` each) and
    report conflicts already present (``sod_conflict`` / ``sod_exception``) on this
    installation's logins and hand-made ones.  Returns the new plan and the violations."""
    if not any(p.enabled for p in policies):
        return plan, ()
    violations: list[Conflict] = []
    targets = []
    for tp in plan.targets:
        state = actual.get(tp.target)
        if state is None:
            targets.append(tp)
            continue
        everything = prevent(tp, desired, state, policies, exceptions, model, now)
        found = [c for c in everything if c.exception is None]
        drop = {(c.user, g) for c in found for g in c.withheld}
        allowed = {(c.user, g): c for c in everything if c.exception is not None for g in c.withheld}
        changes = tuple(
            _resting_on(c, allowed)
            for c in tp.changes
            if not (c.kind is ChangeKind.GRANT_MEMBERSHIP and (c.role, str(c.param("group"))) in drop)
        )
        notices = [Notice(NoticeLevel.ERROR, "sod_violation", c.describe(), c.user) for c in found]
        notices += [conflict_notice(c) for c in detect(desired, state, policies, exceptions, model, now, instance)]
        violations += found
        targets.append(replace(tp, changes=changes, notices=(*tp.notices, *notices)))
    return replace(plan, targets=tuple(targets)), tuple(violations)


def _resting_on(change: Change, allowed: Mapping[tuple[str, str], Conflict]) -> Change:
    """A grant an active exception lets through names that exception among its reasons."""
    if change.kind is not ChangeKind.GRANT_MEMBERSHIP:
        return change
    c = allowed.get((change.role, str(change.param("group"))))
    if c is None or c.exception is None:
        return change
    why = Reason(
        f"sod-exception:{c.policy.id}",
        f"conflicts with SoD policy {c.policy.id!r}; granted only under the {c.exception.describe()}",
    )
    return replace(change, reasons=(*change.reasons, why))


# --------------------------------------------------------------------------- withheld requests


def withheld_requests(
    desired: DesiredState,
    state: ActualState,
    policies: Sequence[Policy],
    exceptions: Sequence[SodException],
    model: AccessModel,
    now: datetime,
) -> list[Conflict]:
    """Every membership the rules ask for that SoD withholds now: the requests
    each plan withholds again until a human decides (the report lists them)."""
    if not any(p.enabled for p in policies):
        return []
    asked = []
    for name, user in sorted(desired.users.items()):
        if not user.login:
            continue
        role = state.roles.get(name)
        have = role.member_of if role is not None else frozenset()
        for group, reasons in sorted(user.memberships.items()):
            if group not in have:
                asked.append(make_change(ChangeKind.GRANT_MEMBERSHIP, name, reasons, group=group))
    if not asked:
        return []
    found = prevent(TargetPlan(state.target, "", tuple(asked)), desired, state, policies, exceptions, model, now)
    return [c for c in found if c.exception is None]


def withheld_count(plan: Plan) -> int:
    """Requests SoD withheld from ``plan`` (its ``sod_violation`` notices)."""
    return sum(1 for tp in plan.targets for n in tp.notices if n.code == "sod_violation")
