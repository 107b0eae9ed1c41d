"""Desired state vs actual state -> changes and notices.  Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from provisioner.core.defaultrole import default_role_changes
from provisioner.core.diffmemo import DiffMemo
from provisioner.core.lifecycle import LeaverPolicy, break_glass_notices, disable_changes, vanished_is_leaver
from provisioner.core.model import (
    ActualRole,
    ActualState,
    DesiredState,
    DesiredUser,
    Lifecycle,
    Marker,
    Reason,
    RoleKind,
)
from provisioner.core.plan import (
    Change,
    ChangeKind,
    Draft,
    Notice,
    NoticeLevel,
    execution_order,
    make_change,
)


@dataclass(frozen=True, slots=True)
class DiffPolicy:
    protected: frozenset[str] = frozenset()
    drift: Literal["report", "revoke"] = "report"
    drift_overrides: Mapping[str, Literal["report", "revoke"]] = field(default_factory=dict)
    """Per role name: overrides ``drift``."""
    break_glass: frozenset[str] = frozenset()
    """Emergency accounts: never changed (like ``protected``), reported when used."""
    leavers: LeaverPolicy = field(default_factory=LeaverPolicy)


def is_protected(role: ActualRole, actual: ActualState, policy: DiffPolicy) -> bool:
    """Superusers, built-in and replication roles, roles that bypass RLS, the
    session's own role and the configured list are never changed."""
    return (
        role.superuser
        or role.system
        or role.replication
        or role.bypassrls
        or role.name == actual.session_role
        or role.name in policy.protected
        or role.name in policy.break_glass
    )


def diff(
    desired: DesiredState, actual: ActualState, policy: DiffPolicy, now: datetime, memo: DiffMemo | None = None
) -> tuple[tuple[Change, ...], tuple[Notice, ...]]:
    """``memo``: reuse what the last diff planned for unchanged people (core/diffmemo.py)."""
    out = Draft()
    for problem in desired.problems:
        out.note(NoticeLevel.ERROR, "identity", problem)
    refused = _plan_groups(desired, actual, policy, out)
    renamed = _plan_renames(desired, actual, policy, out)
    expiry = actual.extra.get("supports_valid_until") is not False
    context = (policy, frozenset(refused), tuple(sorted(renamed.items())), expiry, actual.session_role)
    memo = memo if memo is not None else DiffMemo()  # a fresh one: nothing to reuse
    last, kept = memo.begin(actual, context)
    for name in sorted(desired.users):
        if name in desired.held:
            continue
        desired_user = desired.users[name]
        hit = last.get(name)
        if hit is not None and hit[0] is desired_user:
            out.changes += hit[1]
            out.notices += hit[2]
            kept[name] = hit
            memo.hits += 1
            continue
        changes, notices = len(out.changes), len(out.notices)
        user = _expiry(desired_user, expiry, out)
        _plan_user(user, actual, policy, refused, renamed, now, out)
        if user.lifecycle is not Lifecycle.LEAVER:  # a leaver's plan depends on the clock and sessions
            kept[name] = (desired_user, tuple(out.changes[changes:]), tuple(out.notices[notices:]))
    _plan_vanished(desired, actual, policy, renamed, now, out)
    if "default_roles" in actual.extra:  # MariaDB with manage_default_role (core/defaultrole.py)
        untouchable = {n for n, r in actual.roles.items() if is_protected(r, actual, policy)}
        more, notes = default_role_changes(desired, actual, out.changes, untouchable)
        out.changes += more
        out.notices += notes
    out.notices += break_glass_notices(desired, actual, policy.break_glass)
    return execution_order(out.changes), tuple(out.notices)


def _plan_groups(desired: DesiredState, actual: ActualState, policy: DiffPolicy, out: Draft) -> set[str]:
    refused: set[str] = set()
    for group in sorted(desired.groups):
        role = actual.roles.get(group)
        if role is None:
            rules = sorted({r.rule for u in desired.users.values() for r in u.memberships.get(group, ())})
            reason = Reason(rules[0] if rules else "rules", f"group role needed by rule(s) {', '.join(rules)}")
            marker = Marker(RoleKind.GROUP)
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
        elif is_protected(role, actual, policy):
            refused.add(group)
            out.note(NoticeLevel.ERROR, "protected", f"rules grant protected role {group!r}; refused", group)
        elif role.marker is not None and role.marker.kind is RoleKind.USER:
            refused.add(group)
            out.note(NoticeLevel.ERROR, "refused", f"rules grant {group!r}, a managed login role; refused", group)
    return refused


def _expiry(user: DesiredUser, supported: bool, out: Draft) -> DesiredUser:
    """On a target that cannot expire accounts (``supports_valid_until`` False,
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


def _plan_renames(desired: DesiredState, actual: ActualState, policy: DiffPolicy, out: Draft) -> dict[str, str]:
    """Map new name -> old name for identities whose username changed."""
    by_id = {
        (r.marker.source, r.marker.stable_id): r
        for r in actual.roles.values()
        if r.marker is not None and r.marker.kind is RoleKind.USER and r.marker.stable_id
    }
    renamed: dict[str, str] = {}
    for name, user in sorted(desired.users.items()):
        old = by_id.get((user.source, user.stable_id))
        if old is None or old.name == name or name in actual.roles or name in desired.held:
            continue
        if old.name in desired.users or is_protected(old, actual, policy):
            continue
        renamed[name] = old.name
        reason = Reason("lifecycle:rename", f"username of {user.stable_id} is now {user.username!r}")
        out.changes.append(
            make_change(
                ChangeKind.RENAME_ROLE,
                name,
                [reason],
                old_name=old.name,
                before={"name": old.name},
                after={"name": name},
            )
        )
    return renamed


def _current(name: str, actual: ActualState, renamed: dict[str, str]) -> ActualRole | None:
    return actual.roles.get(renamed.get(name, name))


def _plan_user(
    user: DesiredUser,
    actual: ActualState,
    policy: DiffPolicy,
    refused: set[str],
    renamed: dict[str, str],
    now: datetime,
    out: Draft,
) -> None:
    role = _current(user.name, actual, renamed)
    if role is None:
        _plan_joiner(user, refused, out)
        return
    if is_protected(role, actual, policy):
        out.note(
            NoticeLevel.ERROR,
            "protected",
            f"identity {user.username!r} maps to protected role {role.name!r}; not touched",
            role.name,
        )
        return
    if role.marker is None:
        out.note(
            NoticeLevel.WARNING,
            "unmanaged",
            f"role {role.name!r} exists but is not managed by provisioner; not touched",
            role.name,
        )
        return
    if role.marker.kind is not RoleKind.USER or role.marker.stable_id != user.stable_id:
        out.note(
            NoticeLevel.ERROR,
            "conflict",
            f"role {role.name!r} is managed for another identity ({role.marker.stable_id}); "
            f"{user.username!r} ({user.stable_id}) not provisioned",
            role.name,
        )
        return
    if user.lifecycle is Lifecycle.ACTIVE:
        _plan_login(user.name, role, True, user.valid_until, [user.lifecycle_reason], now, out)
        _plan_memberships(user, role, actual, policy, refused, out)
        _note_scheduled(user, out)
    else:
        _plan_disable(user.name, role, [user.lifecycle_reason], now, out, actual, policy)


def _plan_joiner(user: DesiredUser, refused: set[str], out: Draft) -> None:
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
    marker = Marker(RoleKind.USER, user.stable_id, user.source)
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
    for group in sorted(user.memberships):
        if group not in refused:
            out.changes.append(_membership(ChangeKind.GRANT_MEMBERSHIP, user.name, group, user.memberships[group]))
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
    sessions = int((actual.extra.get("sessions") or {}).get(name, 0))
    changes, notices = disable_changes(name, role, reasons, now, policy.leavers, sessions, actual.roles)
    out.changes += changes
    out.notices += notices


def _plan_memberships(
    user: DesiredUser, role: ActualRole, actual: ActualState, policy: DiffPolicy, refused: set[str], out: Draft
) -> None:
    if not refused and role.member_of == user.memberships.keys():
        return  # the common case at scale: nothing to grant or revoke
    wanted = {g for g in user.memberships if g not in refused}
    for group in sorted(wanted - role.member_of):
        out.changes.append(_membership(ChangeKind.GRANT_MEMBERSHIP, user.name, group, user.memberships[group]))
    for group in sorted(role.member_of - wanted):
        if group in user.memberships:
            continue  # refused group the user already has: leave as is, already reported
        group_role = actual.roles.get(group)
        if group in user.excluded:  # an access reviewer revoked it: whatever the drift policy
            out.changes.append(_membership(ChangeKind.REVOKE_MEMBERSHIP, user.name, group, [user.excluded[group]]))
        elif group_role is not None and group_role.marker is not None:
            reason = Reason("lifecycle:mover", f"no rule grants {group!r} to {user.username!r} any more")
            out.changes.append(_membership(ChangeKind.REVOKE_MEMBERSHIP, user.name, group, [reason]))
        elif policy.drift_overrides.get(user.name, policy.drift) == "revoke":
            reason = Reason("drift", f"{group!r} was granted outside the rules (drift = revoke)")
            out.changes.append(_membership(ChangeKind.REVOKE_MEMBERSHIP, user.name, group, [reason]))
        else:
            out.note(
                NoticeLevel.WARNING,
                "drift",
                f"{user.name} is a member of {group!r} but no rule grants it (drift = report)",
                user.name,
            )


def _plan_vanished(
    desired: DesiredState,
    actual: ActualState,
    policy: DiffPolicy,
    renamed: dict[str, str],
    now: datetime,
    out: Draft,
) -> None:
    moved = set(renamed.values())
    for name in sorted(actual.roles):
        role = actual.roles[name]
        m = role.marker
        if m is None or m.kind is not RoleKind.USER or m.source not in desired.sources:
            continue
        if name in desired.users or name in moved or name in desired.held or is_protected(role, actual, policy):
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


def _membership(kind: ChangeKind, role: str, group: str, reasons: Iterable[Reason]) -> Change:
    granted = kind is ChangeKind.GRANT_MEMBERSHIP
    return make_change(kind, role, reasons, group=group, before={"member": not granted}, after={"member": granted})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
