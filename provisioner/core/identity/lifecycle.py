"""Joiner / mover / leaver classification of one identity at one instant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import NamedTuple

from provisioner.core.values.model import (
    ActualRole,
    ActualState,
    DesiredState,
    Identity,
    Lifecycle,
    Marker,
    Reason,
    RoleKind,
    SourceSnapshot,
)
from provisioner.core.values.plan import Change, ChangeKind, Notice, NoticeLevel, make_change


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """``zone``: the time zone of date-only hire and leave dates (a ``zoneinfo.ZoneInfo``
    built by the shell); ``leave_at``: the time of day a date-only leave date takes
    effect in that zone, None = the end of that day (the next day's 00:00)."""

    terminated_statuses: frozenset[str] = frozenset({"terminated", "inactive", "leaver", "retired"})
    zone: tzinfo = UTC
    leave_at: time | None = None

    @classmethod
    def from_statuses(
        cls, statuses: Iterable[str], zone: tzinfo = UTC, leave_at: time | None = None
    ) -> LifecyclePolicy:
        return cls(frozenset(s.casefold() for s in statuses), zone, leave_at)


def local_date(now: datetime, zone: tzinfo) -> date:
    """The calendar day at ``now`` in ``zone`` (``[lifecycle] timezone``): the rules' ``today``
    and the day an SoD exception is checked against, like a date-only leave date's day."""
    return now.astimezone(zone).date()


INVALID = "lifecycle:invalid"
LIFECYCLE_ATTRIBUTES = ("leave_date", "hire_date")
"""Attributes whose value decides access by itself: an unusable one fails safe."""


def parse_instant(
    text: str, zone: tzinfo = UTC, leave_at: time | None = None, *, leave: bool = False
) -> datetime | None:
    """The instant a hire or leave date takes effect; None when ``text`` is no date.

    ``YYYY-MM-DD`` is a date in ``zone``: a hire date starts at 00:00 that day, a
    leave date (``leave=True``) takes effect at ``leave_at`` that day or, when
    None, at the end of that day.  A timestamp keeps its time: with an offset
    (``Z``, ``+02:00``) as written, without one in ``zone``."""
    value = text.strip()
    if len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        if not leave:
            return datetime.combine(day, time(0), zone)
        if leave_at is None:
            return datetime.combine(day + timedelta(days=1), time(0), zone)
        return datetime.combine(day, leave_at, zone)
    if len(value) < 16 or value[10] not in "Tt ":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def unusable_values(ident: Identity, policy: LifecyclePolicy) -> tuple[tuple[str, str], ...]:
    """(attribute, raw value) of every lifecycle value that is not a date (every value of a
    multi-valued attribute: one bad value beside a good one is never dropped)."""
    return tuple(
        (name, raw)
        for name in LIFECYCLE_ATTRIBUTES
        for raw in ident.attributes.get(name, ())
        if parse_instant(raw, policy.zone, policy.leave_at, leave=name == "leave_date") is None
    )


def _instants(ident: Identity, name: str, policy: LifecyclePolicy) -> list[tuple[datetime, str]]:
    """(instant, raw value) of every value of a hire or leave date, soonest first."""
    leave = name == "leave_date"
    values = ident.attributes.get(name, ())
    found = ((parse_instant(raw, policy.zone, policy.leave_at, leave=leave), raw) for raw in values)
    return sorted((moment, raw) for moment, raw in found if moment is not None)


def invalid_problem(ident: Identity, role: str, why: Reason) -> str:
    """The error notice for an identity whose lifecycle value is not a date."""
    values = ", ".join(f"{name} = {raw!r}" for name, raw in why.attributes)
    return (
        f"{ident.source}: {ident.username!r} ({(ident.dn or ident.stable_id)!r}, role {role}): {values} is not a "
        "date; treated as left now (no new access, everything revoked) until the directory is fixed"
    )


def classify(ident: Identity, now: datetime, policy: LifecyclePolicy) -> tuple[Lifecycle, Reason, datetime | None]:
    """Return the lifecycle state, why, and the instant access must end (if any).

    A hire or leave value that is not a date fails safe: the identity is treated
    as if it had left now (no new access, everything it holds revoked) until the
    directory is fixed; the caller reports it as an error."""
    if not ident.enabled:
        return Lifecycle.LEAVER, Reason("lifecycle:leaver", "account disabled in the directory"), None
    # every value counts (a multi-valued attribute read with a pattern): any terminated
    # status, any unusable date, the earliest leave date and the latest hire date decide
    status = next((v for v in ident.attributes.get("status", ()) if v.casefold() in policy.terminated_statuses), None)
    if status:
        return Lifecycle.LEAVER, Reason("lifecycle:leaver", f"status={status!r}", (("status", status),)), None
    bad = unusable_values(ident, policy)
    if bad:
        what = ", ".join(f"{name}={raw!r}" for name, raw in bad)
        return Lifecycle.LEAVER, Reason(INVALID, f"{what} is not a date; treated as left now", bad), None
    leaves, hires = _instants(ident, "leave_date", policy), _instants(ident, "hire_date", policy)
    leave, leave_raw = leaves[0] if leaves else (None, None)
    if leave_raw and leave is not None and leave <= now:
        return (
            Lifecycle.LEAVER,
            Reason(
                "lifecycle:leaver",
                f"leave_date={leave_raw!r} has passed (effective {leave.isoformat()})",
                (("leave_date", leave_raw), ("leave_at", leave.isoformat())),
            ),
            None,
        )
    hire, hire_raw = hires[-1] if hires else (None, None)
    if hire_raw and hire is not None and hire > now:
        return (
            Lifecycle.FUTURE_HIRE,
            Reason(
                "lifecycle:joiner",
                f"hire_date={hire_raw!r} is in the future (effective {hire.isoformat()})",
                (("hire_date", hire_raw), ("hire_at", hire.isoformat())),
            ),
            leave,
        )
    if leave is not None:
        why = f"active in the directory; leaves {leave.isoformat()} (leave_date={leave_raw!r})"
        return Lifecycle.ACTIVE, Reason("lifecycle:active", why, (("leave_at", leave.isoformat()),)), leave
    return Lifecycle.ACTIVE, Reason("lifecycle:active", "active in the directory"), leave


# --------------------------------------------------------------------------- leavers, retention, break-glass


@dataclass(frozen=True, slots=True)
class LeaverPolicy:
    """What the diff needs to decide about leavers; values, computed by the shell.

    ``missing_runs`` maps ``(source, stable_id)`` to the number of consecutive
    successful reads (this one included) in which a managed identity was absent;
    an identity absent from the map counts as absent once.  ``drop_failures``
    maps a role to the error of its last failed drop (from the state store).
    """

    vanish_after_runs: int = 1
    missing_runs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    retention: timedelta | None = timedelta(days=30)
    """None: disabled roles are never dropped."""
    reassign_to: str | None = None
    """Heir of a dropped role's objects; None: the provisioner's own role."""
    drop_failures: Mapping[str, str] = field(default_factory=dict)


class EventKindName(StrEnum):
    HIRE = "hire"
    LEAVE = "leave"


class LifecycleEvent(NamedTuple):
    """A future instant at which a role's access changes (for the daemon's timers)."""

    at: datetime
    role: str
    kind: EventKindName


def next_lifecycle_events(desired: DesiredState, now: datetime) -> list[LifecycleEvent]:
    """Future hire dates and leave dates of the desired state, soonest first.

    A hire event is when a future joiner gets access; a leave event is when an
    active (or future) identity's leave date passes and its role must be
    disabled.  Run a reconciliation with ``now`` = the event's instant."""
    out: list[LifecycleEvent] = []
    for user in desired.users.values():
        if user.lifecycle is Lifecycle.FUTURE_HIRE:
            raw = dict(user.lifecycle_reason.attributes).get("hire_at")
            hire = parse_instant(raw) if raw else None
            if hire is not None and hire > now:
                out.append(LifecycleEvent(hire, user.name, EventKindName.HIRE))
        if user.lifecycle is not Lifecycle.LEAVER and user.valid_until is not None and user.valid_until > now:
            out.append(LifecycleEvent(user.valid_until, user.name, EventKindName.LEAVE))
    return sorted(out)


def vanished_is_leaver(marker: Marker, policy: LeaverPolicy) -> tuple[bool, int]:
    """Whether an identity missing from its source is a leaver yet, and its count."""
    runs = policy.missing_runs.get((marker.source or "", marker.stable_id or ""), 1)
    return runs >= policy.vanish_after_runs, runs


def missing_counts(
    previous: Mapping[str, Mapping[str, int]],
    snapshots: Iterable[SourceSnapshot],
    actual: Iterable[ActualState],
) -> dict[str, dict[str, int]]:
    """Per source, stable id -> consecutive reads it has been missing, this read included.

    Only managed login roles (on any target) of a source that was read count;
    an identity seen again starts from zero."""
    snaps = {s.source: {i.stable_id for i in s.identities} for s in snapshots if s.complete}  # partial: unknown
    out: dict[str, dict[str, int]] = {source: {} for source in snaps}
    for state in actual:
        for role in state.roles.values():
            m = role.marker
            if m is None or m.kind is not RoleKind.USER or m.source not in snaps or not m.stable_id:
                continue
            if m.stable_id in snaps[m.source]:
                continue
            out[m.source][m.stable_id] = previous.get(m.source, {}).get(m.stable_id, 0) + 1
    return out


def flatten_missing(counts: Mapping[str, Mapping[str, int]]) -> dict[tuple[str, str], int]:
    return {(source, sid): n for source, ids in counts.items() for sid, n in ids.items()}


def retention_due(role: ActualRole, now: datetime, policy: LeaverPolicy) -> bool:
    """A disabled role whose VALID UNTIL (written at disable time) is older than the retention."""
    return (
        policy.retention is not None
        and not role.login
        and role.valid_until is not None
        and role.valid_until + policy.retention <= now
    )


def other_host_logins(name: str, actual: ActualState) -> list[Notice]:
    """MariaDB / MySQL: an account of the leaver's user name with another host part
    (``alice@localhost``) is never changed, and its sessions end with the leaver's (the
    processlist names no host); one that can still log in is a warning on every plan."""
    if actual.capabilities.dialect == "postgresql":
        return []
    others = sorted(n for n, r in actual.roles.items() if n.startswith(f"{name}@") and r.login and not r.system)
    return [
        Notice(
            NoticeLevel.WARNING,
            "leaver_other_account",
            f"{name} is a leaver, but the account {other} (the same user name, another host; not managed) "
            "can still log in: lock or drop it by hand",
            name,
        )
        for other in others
    ]


def disable_changes(
    name: str,
    role: ActualRole,
    reasons: list[Reason],
    now: datetime,
    policy: LeaverPolicy,
    sessions: int,
    actual: ActualState,
) -> tuple[list[Change], list[Notice]]:
    """A leaver's changes, in this order inside one transaction: NOLOGIN and
    VALID UNTIL now, open sessions terminated, every membership revoked.  The
    marker stays.  After the retention the disabled role is dropped instead."""
    roles = actual.roles
    changes: list[Change] = []
    notices: list[Notice] = other_host_logins(name, actual)
    if sessions:
        why = Reason("lifecycle:leaver", f"{sessions} open session(s) of a leaver")
        changes.append(make_change(ChangeKind.TERMINATE_SESSIONS, name, [*reasons, why]))
    if retention_due(role, now, policy):
        drop, notes = _drop(name, role, reasons, policy, roles)
        return changes + drop, notes
    expired = role.valid_until is not None and role.valid_until <= now
    if role.login or not expired:
        changes.append(
            make_change(
                ChangeKind.ALTER_ROLE,
                name,
                reasons,
                login=False,
                valid_until=now.isoformat(),
                before={"login": role.login, "valid_until": _iso(role.valid_until)},
                after={"login": False, "valid_until": now.isoformat()},
            )
        )
        if not sessions:
            changes.append(make_change(ChangeKind.TERMINATE_SESSIONS, name, reasons))
    for group in sorted(role.member_of):
        changes.append(
            make_change(
                ChangeKind.REVOKE_MEMBERSHIP,
                name,
                reasons,
                group=group,
                before={"member": True},
                after={"member": False},
            )
        )
    return changes, notices


def _drop(
    name: str, role: ActualRole, reasons: list[Reason], policy: LeaverPolicy, roles: Mapping[str, ActualRole]
) -> tuple[list[Change], list[Notice]]:
    assert policy.retention is not None and role.valid_until is not None
    days = policy.retention.days
    if policy.reassign_to is not None and policy.reassign_to not in roles:
        msg = (
            f"{name}: retention of {days} days passed but reassign_owned_to role "
            f"{policy.reassign_to!r} does not exist; not dropped"
        )
        return [], [Notice(NoticeLevel.ERROR, "retention", msg, name)]
    notes = []
    if name in policy.drop_failures:
        msg = f"{name}: dropping failed before and the role stays disabled: {policy.drop_failures[name]}"
        notes.append(Notice(NoticeLevel.ERROR, "drop_failed", msg, name))
    why = Reason("lifecycle:retention", f"disabled since {role.valid_until.isoformat()}; retention {days} days passed")
    change = make_change(
        ChangeKind.DROP_ROLE,
        name,
        [*reasons, why],
        reassign_to=policy.reassign_to,
        before={"exists": True, "login": role.login, "member_of": sorted(role.member_of)},
        after={"exists": False},
    )
    return [change], notes


def break_glass_notices(desired: DesiredState, actual: ActualState, break_glass: frozenset[str]) -> list[Notice]:
    """Emergency accounts are never changed; say when one is in use or holds
    memberships no rule grants."""
    sessions: Mapping[str, int] = actual.sessions
    out = []
    for name in sorted(break_glass):
        role = actual.roles.get(name)
        if role is None:
            continue
        if sessions.get(name):
            out.append(
                Notice(
                    NoticeLevel.WARNING,
                    "break_glass_session",
                    f"break-glass role {name!r} has {sessions[name]} active session(s)",
                    name,
                )
            )
        user = desired.users.get(name)
        granted = set(user.memberships) if user is not None else set()
        extra = sorted(role.member_of - granted)
        if extra:
            out.append(
                Notice(
                    NoticeLevel.WARNING,
                    "break_glass_grant",
                    f"break-glass role {name!r} holds membership(s) no rule grants: {', '.join(extra)}",
                    name,
                )
            )
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
