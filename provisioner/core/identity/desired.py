"""Identities + rules -> the desired state of every target."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime

from provisioner.core.identity.lifecycle import INVALID, LifecyclePolicy, classify, invalid_problem, local_date
from provisioner.core.identity.memo import GrantMemo
from provisioner.core.identity.naming import NamingPolicy, assign_names
from provisioner.core.identity.rules import RuleSet, overlong_check
from provisioner.core.values.model import (
    DesiredState,
    DesiredUser,
    Identity,
    Lifecycle,
    Reason,
    SourceSnapshot,
)


def desired_state(
    snapshots: Iterable[SourceSnapshot],
    rules: RuleSet,
    naming: NamingPolicy,
    lifecycle: LifecyclePolicy,
    now: datetime,
    memo: GrantMemo | None = None,
    granted_only: frozenset[str] = frozenset(),
) -> DesiredState:
    """``memo``: grants memoised across calls (the daemon keeps one); a fresh one otherwise.
    ``granted_only``: sources with ``login_for = "granted"``: their active identities no
    rule grants anything get no role (an existing one is disabled like a leaver's)."""
    memo = memo if memo is not None else GrantMemo()
    snaps = list(snapshots)
    identities = [i for s in snaps for i in s.identities]
    today = local_date(now, lifecycle.zone)
    memo.begin(rules, today)
    names = assign_names(identities, naming, memo.name_of(naming), memo.skeleton_of(naming.scripts))
    users: dict[str, DesiredUser] = {}
    groups: set[str] = set()
    states: dict[tuple[object, ...], tuple[Lifecycle, Reason, datetime | None]] = {}
    problems = [*names.problems, *(f"{s.source}: {e}" for s in snaps for e in s.errors)]
    shared = {(s.source, sid): dns for s in snaps for sid, dns in s.shared_ids.items()}
    too_long = overlong_check(rules)
    for ident in identities:
        name = names.names.get(ident.stable_id)
        if name is None or name in users:
            continue
        # classify reads exactly these (every value); ``now`` is fixed within the call
        attrs = ident.attributes
        key = (ident.enabled, attrs.get("status", ()), attrs.get("leave_date", ()), attrs.get("hire_date", ()))
        state = states.get(key)
        if (ident.source, ident.stable_id) in shared:
            state, problem = _shared_id(ident, shared[(ident.source, ident.stable_id)])
            problems.append(problem)
        elif state is None:
            state = states[key] = classify(ident, now, lifecycle)
        if state[1].rule == INVALID:
            problems.append(invalid_problem(ident, name, state[1]))
        user = memo.user(ident, name, state)
        if user is None:
            user = _desired_user(ident, name, rules, state, memo, today)
        memo.keep(ident, name, state, user)
        if ident.source in granted_only and user.lifecycle is Lifecycle.ACTIVE and not user.memberships:
            why = Reason("login_for:granted", f"no rule grants {ident.username!r} anything (login_for = \"granted\")")
            user = replace(user, lifecycle=Lifecycle.LEAVER, lifecycle_reason=why, valid_until=None)
        users[name] = user
        groups.update(user.memberships)
        if too_long is not None and user.lifecycle is Lifecycle.ACTIVE:
            problems += too_long(ident, today)
    contenders = {
        name: tuple(_contender(i, name, rules, lifecycle, now, memo, granted_only) for i in group)
        for name, group in names.contenders.items()
    }
    memo.end()
    clashes = group_template_collisions(users.values(), rules) if any(r.templates_groups for r in rules.rules) else {}
    return DesiredState(
        users=users,
        groups=frozenset(groups),
        sources=frozenset(s.source for s in snaps),
        problems=(*problems, *clashes.values()),
        warnings=shared_employee_ids(identities),
        partial=frozenset(s.source for s in snaps if not s.complete),
        held=names.held | frozenset(clashes),
        contenders=contenders,
    )


def _shared_id(ident: Identity, dns: tuple[str, ...]) -> tuple[tuple[Lifecycle, Reason, datetime | None], str]:
    """Entries that share one stable id (a rehire's new record beside the old one, a stale
    record): which one is the person is unknown, and a read returns them in no fixed order,
    so none of them decides -- the person is treated as having left now (fails safe)."""
    which = ", ".join(dns)
    why = Reason(
        "lifecycle:ambiguous", f"entries {which} share stable id {ident.stable_id!r}; treated as left now"
    )
    problem = (
        f"{ident.source}: entries {which} share stable id {ident.stable_id!r}: which one is the person is "
        "unknown, so the identity is treated as having left now (no access) until only one entry carries it"
    )
    return (Lifecycle.LEAVER, why, None), problem


def _contender(
    ident: Identity,
    name: str,
    rules: RuleSet,
    lifecycle: LifecyclePolicy,
    now: datetime,
    memo: GrantMemo,
    granted_only: frozenset[str],
) -> DesiredUser:
    """An identity refused ``name`` this run (a collision), classified like any other:
    the diff still disables the role it owns when it is not active."""
    user = _desired_user(ident, name, rules, classify(ident, now, lifecycle), memo, local_date(now, lifecycle.zone))
    if ident.source in granted_only and user.lifecycle is Lifecycle.ACTIVE and not user.memberships:
        why = Reason("login_for:granted", f"no rule grants {ident.username!r} anything (login_for = \"granted\")")
        user = replace(user, lifecycle=Lifecycle.LEAVER, lifecycle_reason=why, valid_until=None)
    return user
def shared_employee_ids(identities: Iterable[Identity]) -> tuple[str, ...]:
    """One warning per employee id that two or more people of one source carry: an HR
    data error, or one person with two accounts (whose duties SoD then checks apart).
    Nothing is withheld: each account keeps what its own attributes give it."""
    holders: dict[tuple[str, str], dict[str, str]] = {}
    shown: dict[tuple[str, str], str] = {}
    for ident in identities:
        for value in ident.attributes.get("employee_id", ()):
            key = (ident.source, value.strip().casefold())
            if key[1]:
                holders.setdefault(key, {})[ident.stable_id] = ident.username
                shown.setdefault(key, value.strip())
    return tuple(
        f"{key[0]}: employee id {shown[key]!r} is shared by {len(people)} people: "
        f"{', '.join(sorted(people.values()))}; each keeps their own access, HR should correct the record"
        for key, people in sorted(holders.items())
        if len(people) > 1
    )


def group_template_collisions(users: Iterable[DesiredUser], rules: RuleSet) -> dict[str, str]:
    """Role name -> problem, for every ``{group}``-templated role name that two
    different groups normalise to (``Eq Desk`` and ``eq-desk``, or ``cn=admins``
    in two subtrees).  The role is held: nothing is granted in it this run, and
    members still in one of the groups keep it."""
    templated = {r.id for r in rules.rules if r.templates_groups}
    origins: dict[str, set[str]] = {}
    # reasons are shared objects (one per rule and evidence, core/identity/memo.py): each
    # one's origin is looked up once per call, keyed by identity (all alive for the call)
    origin_of: dict[int, str | None] = {}
    for user in users:
        for role, reasons in user.memberships.items():
            for reason in reasons:
                key = id(reason)
                if key in origin_of:
                    origin = origin_of[key]
                else:
                    origin = origin_of[key] = (
                        next((v for k, v in reason.attributes if k == "from_group"), None)
                        if reason.rule in templated
                        else None
                    )
                if origin is not None:
                    origins.setdefault(role, set()).add(origin)
    return {
        role: f"role name collision: groups {', '.join(sorted(o.removeprefix('name:') for o in found))} "
        f"all template to {role!r}; no membership in it is granted, none of their members loses it"
        for role, found in sorted(origins.items())
        if len(found) > 1
    }


def _desired_user(
    ident: Identity,
    name: str,
    rules: RuleSet,
    classified: tuple[Lifecycle, Reason, datetime | None],
    memo: GrantMemo,
    today: date,
) -> DesiredUser:
    state, why, valid_until = classified
    memberships: dict[str, tuple[Reason, ...]] = {}
    if state is Lifecycle.ACTIVE:
        for grant in memo.grants(rules, ident, today):
            if grant.role != name:
                held = memberships.get(grant.role)
                memberships[grant.role] = memo.single(grant.reason) if held is None else (*held, grant.reason)
    return DesiredUser(
        name=name,
        stable_id=ident.stable_id,
        username=ident.username,
        source=ident.source,
        lifecycle=state,
        lifecycle_reason=why,
        valid_until=valid_until,
        memberships=memberships,
    )
