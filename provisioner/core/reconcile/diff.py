"""Desired state vs actual state -> changes and notices.  Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from provisioner.core.identity.lifecycle import break_glass_notices, disable_changes, vanished_is_leaver
from provisioner.core.ownership.ledger import (
    foreign_summary,
    is_foreign,
    ledger,
    ledger_revokes,
    mine,
    needs_upgrade,
    owners,
    renamed_ownership,
    upgrade_marker,
    with_ledger,
)
from provisioner.core.ownership.policy import DiffPolicy as DiffPolicy
from provisioner.core.ownership.policy import is_protected
from provisioner.core.reconcile.defaultrole import default_role_changes
from provisioner.core.reconcile.diffmemo import DiffMemo, Read, still_read
from provisioner.core.reconcile.renames import plan_renames
from provisioner.core.reconcile.unowned import group_named, not_ours, reached_through
from provisioner.core.values.model import (
    ActualRole,
    ActualState,
    DesiredState,
    DesiredUser,
    Lifecycle,
    Marker,
    Reason,
    RoleKind,
)
from provisioner.core.values.plan import (
    Change,
    ChangeKind,
    Draft,
    Notice,
    NoticeLevel,
    execution_order,
    make_change,
)


def diff(
    desired: DesiredState, actual: ActualState, policy: DiffPolicy, now: datetime, memo: DiffMemo | None = None
) -> tuple[tuple[Change, ...], tuple[Notice, ...]]:
    """``memo``: reuse what the last diff planned for unchanged people (core/reconcile/diffmemo.py)."""
    out = Draft()
    for problem in desired.problems:
        out.note(NoticeLevel.ERROR, "identity", problem)
    for warning in desired.warnings:
        out.note(NoticeLevel.WARNING, "identity", warning)
    refused = _plan_groups(desired, actual, policy, out)
    renamed, stuck = plan_renames(desired, actual, lambda r: is_protected(r, actual, policy), policy.instance, out)
    expiry = actual.capabilities.expiring_accounts
    context = (
        policy,
        frozenset(refused),
        tuple(sorted(renamed.items())),
        tuple(sorted(stuck.items())),
        expiry,
        actual.session_role,
        desired.frozen,
    )
    memo = memo if memo is not None else DiffMemo()  # a fresh one: nothing to reuse
    last, kept = memo.begin(actual, context)
    for name in sorted(desired.users):
        if name in desired.held:
            continue
        desired_user = desired.users[name]
        if name in desired.groups and _current(name, actual, renamed) is None:  # MariaDB would make both
            out.notices += group_named(desired_user)
            continue
        hit = last.get(name)
        if hit is not None and hit[0] is desired_user and still_read(hit[3], actual.roles):
            out.changes += hit[1]
            out.notices += hit[2]
            kept[name] = hit
            memo.hits += 1
            continue
        changes, notices = len(out.changes), len(out.notices)
        user = _expiry(desired_user, expiry, out)
        if name in stuck:  # renamed in the source, but the new name is taken: kept under the old name
            user = replace(user, name=stuck[name])
        _plan_user(user, actual, policy, refused, renamed, now, out, desired.frozen)
        # Kept only when nothing is to change: a leaver's plan depends on the clock and sessions, and a person with
        # changes has them applied (the roles read are then other objects): keeping those would only hold memory.
        if user.lifecycle is not Lifecycle.LEAVER and len(out.changes) == changes:
            read = _roles_read(user, actual, renamed)
            kept[name] = (desired_user, tuple(out.changes[changes:]), tuple(out.notices[notices:]), read)
    _plan_contenders(desired, actual, policy, now, out)
    _plan_vanished(desired, actual, policy, renamed, now, out)
    if actual.default_roles is not None:  # MariaDB with manage_default_role (core/reconcile/defaultrole.py)
        untouchable = {n for n, r in actual.roles.items() if is_protected(r, actual, policy)}
        more, notes = default_role_changes(desired, actual, out.changes, untouchable)
        out.changes += more
        out.notices += notes
    out.notices += break_glass_notices(desired, actual, policy.break_glass)
    out.notices += renamed_ownership(desired, actual, policy.instance)
    foreign = foreign_summary(actual, policy.instance)
    if foreign is not None:
        out.note(NoticeLevel.INFO, "foreign", foreign)
    return execution_order(out.changes), tuple(out.notices)


def _roles_read(user: DesiredUser, actual: ActualState, renamed: dict[str, str]) -> Read:
    """The roles :func:`_plan_user` reads for a person who is not a leaver: the role
    under the person's (current) name and every group role of a membership no rule
    grants (the revocation candidates, checked for protection)."""
    name = renamed.get(user.name, user.name)
    role = actual.roles.get(name)
    read: list[tuple[str, object]] = [(user.name, actual.roles.get(user.name)), (name, role)]
    if role is not None:
        read += [(g, actual.roles.get(g)) for g in role.member_of if g not in user.memberships]
    return tuple(read)


def _plan_groups(desired: DesiredState, actual: ActualState, policy: DiffPolicy, out: Draft) -> set[str]:
    refused: set[str] = set()
    missing = {g for g in desired.groups if g not in actual.roles}
    needed_by: dict[str, set[str]] = {g: set() for g in missing}
    if missing:  # one pass over the users, not one per missing group
        for u in desired.users.values():
            for g in missing.intersection(u.memberships):
                needed_by[g].update(r.rule for r in u.memberships[g])
    for group in sorted(desired.groups):
        role = actual.roles.get(group)
        if group in desired.held:
            refused.add(group)  # e.g. two groups template to this name: reported in desired.problems
            continue
        if role is None and group not in policy.protected | policy.break_glass:  # never created either
            rules = sorted(needed_by[group])
            reason = Reason(rules[0] if rules else "rules", f"group role needed by rule(s) {', '.join(rules)}")
            marker = Marker(RoleKind.GROUP, instance=policy.instance)
            out.changes.append(
                make_change(
                    ChangeKind.CREATE_ROLE,
                    group,
                    [reason],
                    role_kind="group",
                    login=False,
                    valid_until=None,
                    marker=marker.to_json(),
                    after={"exists": True},
                )
            )
        elif role is None or is_protected(role, actual, policy):
            refused.add(group)
            out.note(NoticeLevel.ERROR, "protected", f"rules grant protected role {group!r}; refused", group)
        elif role.marker is not None and role.marker.kind is RoleKind.USER:
            refused.add(group)
            out.note(NoticeLevel.ERROR, "refused", f"rules grant {group!r}, a managed login role; refused", group)
        elif (
            role.marker is not None
            and policy.instance is not None
            and role.marker.instance is None
            and not is_foreign(role.marker, policy.instance)
        ):
            marker = Marker(RoleKind.GROUP, instance=policy.instance)
            reason = Reason("ownership:upgrade", f"marker of {group!r} now names installation {policy.instance!r}")
            out.changes.append(make_change(ChangeKind.SET_MARKER, group, [reason], marker=marker.to_json()))
    return refused


def _expiry(user: DesiredUser, supported: bool, out: Draft) -> DesiredUser:
    """On a target that cannot expire accounts (``capabilities.expiring_accounts`` False,
    MySQL/MariaDB) the desired VALID UNTIL is None; the leave date is enforced
    by the run at that time (the daemon's leave timer)."""
    if supported or user.valid_until is None:
        return user
    if user.lifecycle is Lifecycle.ACTIVE:
        out.note(
            NoticeLevel.INFO,
            "scheduled_disable",
            f"{user.name}: access ends {user.valid_until.isoformat()} (leave_date); this target cannot expire "
            "accounts: disabled by the run at that time (daemon leave timer)",
            user.name,
        )
    return replace(user, valid_until=None)


def _current(name: str, actual: ActualState, renamed: dict[str, str]) -> ActualRole | None:
    if name not in renamed and name in renamed.values():
        return None  # renamed away this run: the name is free for a newcomer (renames run before creates)
    return actual.roles.get(renamed.get(name, name))


def _plan_user(
    user: DesiredUser,
    actual: ActualState,
    policy: DiffPolicy,
    refused: set[str],
    renamed: dict[str, str],
    now: datetime,
    out: Draft,
    frozen: frozenset[str] = frozenset(),
) -> None:
    role = _current(user.name, actual, renamed)
    if role is None:
        _plan_joiner(user, refused, policy, out, frozen)
        return
    refusal = not_ours(user, role, actual, policy)
    if refusal is not None:  # protected, unmanaged, another installation's or another identity's
        out.notices.append(refusal)
        return
    if user.lifecycle is Lifecycle.ACTIVE:
        _plan_login(user.name, role, True, user.valid_until, [user.lifecycle_reason], now, out)
        _plan_memberships(user, role, actual, policy, refused, out, frozen)
        _note_scheduled(user, out)
    else:
        _plan_disable(user.name, role, [user.lifecycle_reason], now, out, actual, policy)


def _plan_joiner(
    user: DesiredUser, refused: set[str], policy: DiffPolicy, out: Draft, frozen: frozenset[str] = frozenset()
) -> None:
    if user.lifecycle is Lifecycle.FUTURE_HIRE:
        out.note(
            NoticeLevel.INFO,
            "scheduled_joiner",
            f"{user.name}: {user.lifecycle_reason.text}; nothing granted yet",
            user.name,
        )
        return
    if user.lifecycle is Lifecycle.LEAVER:
        return
    # A joiner's membership ledger is written once, in its creation marker: every group this
    # plan grants it.  An entry whose GRANT then fails means nothing (the ledger counts only
    # memberships the role holds; core/ownership/ledger.py), so its grants carry no marker:
    # one COMMENT per new person instead of one per membership and round trip.
    granted = frozenset(g for g in user.memberships if g not in refused and g not in frozen)
    marker = Marker(RoleKind.USER, user.stable_id, user.source, policy.instance, granted)
    reason = Reason("lifecycle:joiner", f"new identity {user.username!r} ({user.stable_id}) in {user.source}")
    out.changes.append(
        make_change(
            ChangeKind.CREATE_ROLE,
            user.name,
            [reason],
            role_kind="user",
            login=True,
            valid_until=_iso(user.valid_until),
            marker=marker.to_json(),
            after={"exists": True, "login": True},
        )
    )
    for group in sorted(granted):
        out.changes.append(
            _membership(ChangeKind.GRANT_MEMBERSHIP, user.name, group, user.memberships[group], shared=out.group_params)
        )
    _note_scheduled(user, out)


def _note_scheduled(user: DesiredUser, out: Draft) -> None:
    if user.valid_until is not None:
        out.note(
            NoticeLevel.INFO,
            "scheduled_disable",
            f"{user.name}: access ends {user.valid_until.isoformat()} (leave_date); enforced as VALID UNTIL",
            user.name,
        )


def _plan_login(
    name: str,
    role: ActualRole,
    login: bool,
    valid_until: datetime | None,
    reasons: list[Reason],
    now: datetime,
    out: Draft,
) -> None:
    params: dict[str, object] = {}
    if role.login != login:
        params["login"] = login
    if role.valid_until != valid_until:
        params["valid_until"] = _iso(valid_until)
    if not params:
        return
    if not role.login and login:
        reasons = [Reason("lifecycle:rehire", "identity is active again; login re-enabled"), *reasons]
    out.changes.append(
        make_change(
            ChangeKind.ALTER_ROLE,
            name,
            reasons,
            before={"login": role.login, "valid_until": _iso(role.valid_until)},
            after={"login": login, "valid_until": _iso(valid_until)},
            **params,
        )
    )


def _plan_disable(
    name: str,
    role: ActualRole,
    reasons: list[Reason],
    now: datetime,
    out: Draft,
    actual: ActualState,
    policy: DiffPolicy,
) -> None:
    sessions = actual.sessions.get(name, 0)
    changes, notices = disable_changes(name, role, reasons, now, policy.leavers, sessions, actual)
    out.changes += ledger_revokes(changes, role, policy.instance)
    out.notices += notices


def _plan_memberships(
    user: DesiredUser,
    role: ActualRole,
    actual: ActualState,
    policy: DiffPolicy,
    refused: set[str],
    out: Draft,
    frozen: frozenset[str] = frozenset(),
) -> None:
    """Grant what the rules want; revoke what provisioner granted (the ledger) and no rule
    wants any more (a mover); any other membership is drift: reported, revoked only with
    ``drift = "revoke"``, never in a protected or break-glass role.  Every membership change
    carries the member's marker with the ledger after it (written in the same transaction)."""
    assert role.marker is not None
    have = role.member_of
    tool = ledger(role, user.memberships.keys())
    if not (refused or frozen or needs_upgrade(role.marker, policy.instance)) and have == user.memberships.keys():
        return  # the common case at scale: nothing to grant or revoke
    wanted = {g for g in user.memberships if g not in refused and g not in frozen}
    now = set(tool)
    base = with_ledger(role.marker, tool, policy.instance)
    changes: list[Change] = []
    for group in sorted(have - wanted):
        if group in user.memberships or group in frozen:
            continue  # refused or frozen group the user already has: leave as is, already reported
        group_role = actual.roles.get(group)
        untouchable = group_role is not None and is_protected(group_role, actual, policy)
        if group in user.excluded and not untouchable:  # an access reviewer revoked it: whatever the drift policy
            now.discard(group)
            changes.append(
                _membership(ChangeKind.REVOKE_MEMBERSHIP, user.name, group, [user.excluded[group]], base, now)
            )
        elif group in tool and not untouchable:
            now.discard(group)
            reason = Reason("lifecycle:mover", f"no rule grants {group!r} to {user.username!r} any more")
            changes.append(_membership(ChangeKind.REVOKE_MEMBERSHIP, user.name, group, [reason], base, now))
        elif policy.drift_overrides.get(user.name, policy.drift) == "revoke" and not untouchable:
            reason = Reason("drift", f"{group!r} was granted outside the rules (drift = revoke)")
            changes.append(_membership(ChangeKind.REVOKE_MEMBERSHIP, user.name, group, [reason], base, now))
        else:
            why = "a protected or break-glass role: never revoked" if untouchable else "drift = report"
            via = "".join(f"; through it also of {r!r}" for r in reached_through(group, actual))  # alerted by name
            out.note(NoticeLevel.WARNING, "drift", f"{user.name} is a member of {group!r} but no rule grants it and "
                     f"provisioner did not grant it ({why}){via}", user.name)
    grant, shared = ChangeKind.GRANT_MEMBERSHIP, out.group_params
    for group in sorted(wanted - have):
        now.add(group)
        changes.append(_membership(grant, user.name, group, user.memberships[group], base, now, shared))
    out.changes += changes
    if not changes:
        out.changes += upgrade_marker(user.name, role, tool, policy.instance)


def _plan_contenders(desired: DesiredState, actual: ActualState, policy: DiffPolicy, now: datetime, out: Draft) -> None:
    """Identities refused a role name this run because another identity maps to it too
    (reported in ``desired.problems``): an active one keeps what it has until the collision
    is resolved, but one that is not active (a leaver, a future rehire) loses the role it
    owns -- found by its marker, whatever the role's name -- in this very run."""
    if not desired.contenders:
        return
    own = owners(actual, policy.instance)
    for name in sorted(desired.contenders):
        for user in desired.contenders[name]:
            role = own.get((user.source, user.stable_id))
            if user.lifecycle is Lifecycle.ACTIVE or role is None or is_protected(role, actual, policy):
                continue
            _plan_disable(role.name, role, [user.lifecycle_reason], now, out, actual, policy)


def _plan_vanished(
    desired: DesiredState,
    actual: ActualState,
    policy: DiffPolicy,
    renamed: dict[str, str],
    now: datetime,
    out: Draft,
) -> None:
    moved = set(renamed.values())
    present = {(u.source, u.stable_id) for u in desired.users.values()}
    present.update((u.source, u.stable_id) for group in desired.contenders.values() for u in group)
    user_roles = [  # this installation's login roles, then in name order (a shared cluster holds many others)
        (name, role, m)
        for name, role in actual.roles.items()
        if (m := mine(role, policy.instance)) is not None and m.kind is RoleKind.USER and m.source in desired.sources
    ]
    for name, role, m in sorted(user_roles, key=lambda item: item[0]):
        if m.source in desired.partial:  # unknown, not gone: an error notice says why
            continue
        if (m.source, m.stable_id) in present or name in moved:
            continue  # the identity is still there (its role renamed, or its name held this run)
        if is_protected(role, actual, policy):
            continue
        gone, runs = vanished_is_leaver(m, policy.leavers)
        if not gone:
            out.note(
                NoticeLevel.WARNING,
                "vanishing",
                f"{name}: identity {m.stable_id} missing from source {m.source} in {runs} consecutive "
                f"read(s); disabled after {policy.leavers.vanish_after_runs}",
                name,
            )
            continue
        reason = Reason("lifecycle:leaver", f"identity {m.stable_id} is no longer in source {m.source}")
        _plan_disable(name, role, [reason], now, out, actual, policy)


def _membership(
    kind: ChangeKind,
    role: str,
    group: str,
    reasons: Iterable[Reason],
    marker: Marker | None = None,
    ledger_after: Iterable[str] = (),
    shared: dict[str, tuple[tuple[str, Any], ...]] | None = None,
) -> Change:
    """``marker``: the member's marker, written with ``ledger_after`` beside the change.

    Built directly (params already in key order), its before/after the shared constant
    pairs: a first sync of 100,000 people plans 600,000 of these.  ``shared``: the draft's
    table of group parameters (:attr:`Draft.group_params`)."""
    params = (("group", group),) if shared is None else shared.setdefault(group, (("group", group),))
    if marker is not None:
        params += (("marker", replace(marker, granted=frozenset(ledger_after)).to_json()),)
    if kind is ChangeKind.GRANT_MEMBERSHIP:
        return Change(kind, role, tuple(reasons), params, _NOT_MEMBER, _MEMBER)
    return Change(kind, role, tuple(reasons), params, _MEMBER, _NOT_MEMBER)


_MEMBER: tuple[tuple[str, Any], ...] = (("member", True),)
_NOT_MEMBER: tuple[tuple[str, Any], ...] = (("member", False),)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
