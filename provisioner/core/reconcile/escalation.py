"""Managed roles that hold SUPERUSER, REPLICATION or BYPASSRLS.  Pure.

provisioner never gives these attributes; a managed role that has one got it
by hand and now bypasses every grant, segregation-of-duties check and review.
Each such role is a ``privileged_attribute`` error notice (an alert when the
run closes; ``plan`` and ``apply`` exit 3).

A **leaver** in that state is disabled as far as provisioner's account can:
PostgreSQL lets only a superuser alter a superuser (NOLOGIN, VALID UNTIL) or
signal its sessions, but a membership can be revoked by whoever administers
the group.  So its memberships of managed groups are revoked, and a
``leaver_incomplete`` error notice names what is left for a DBA to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.core.ownership.ledger import mine
from provisioner.core.ownership.policy import DiffPolicy
from provisioner.core.values.model import ActualRole, ActualState, DesiredState, Lifecycle, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Draft, Notice, NoticeLevel, make_change

ATTRIBUTE_CODE = "privileged_attribute"
INCOMPLETE_CODE = "leaver_incomplete"


def privileged_attributes(role: ActualRole) -> tuple[str, ...]:
    """The attributes of ``role`` that bypass privilege checks."""
    flags = (("SUPERUSER", role.superuser), ("REPLICATION", role.replication), ("BYPASSRLS", role.bypassrls))
    return tuple(name for name, on in flags if on)


def escalated_leaver(role: ActualRole, actual: ActualState, policy: DiffPolicy) -> bool:
    """A managed login role that is protected only by an attribute set by hand
    (not by configuration, break-glass or being the session's own role)."""
    return (
        role.marker is not None
        and role.marker.kind is RoleKind.USER
        and bool(privileged_attributes(role))
        and not role.system
        and role.name != actual.session_role
        and role.name not in policy.protected
        and role.name not in policy.break_glass
    )


@dataclass(frozen=True, slots=True)
class _Leaver:
    name: str
    reason: Reason


def plan_escalations(
    desired: DesiredState, actual: ActualState, policy: DiffPolicy
) -> tuple[list[Change], list[Notice]]:
    out = Draft()
    hits = sorted(  # one cheap pass: a cluster may hold 100,000s of roles
        name
        for name, role in actual.roles.items()
        if (role.superuser or role.replication or role.bypassrls) and mine(role, policy.instance) is not None
    )  # another installation's role is that installation's finding, never an error of this run
    for name in hits:
        role = actual.roles[name]
        attrs = privileged_attributes(role)
        if name == actual.session_role or role.marker is None:
            continue
        kind = "login role" if role.marker.kind is RoleKind.USER else "group role"
        fix = f"ALTER ROLE {name} " + " ".join(f"NO{a}" for a in attrs)
        out.note(
            NoticeLevel.ERROR,
            ATTRIBUTE_CODE,
            f"managed {kind} {name} has {', '.join(attrs)}, which provisioner never grants: it bypasses every "
            f"grant, SoD policy and review; a superuser must run: {fix}",
            name,
        )
        leaver = _leaver(name, desired)
        if leaver is not None and escalated_leaver(role, actual, policy):
            _disable_partly(leaver, role, actual, attrs, out)
    return out.changes, out.notices


def _leaver(name: str, desired: DesiredState) -> _Leaver | None:
    user = desired.users.get(name)
    if user is None or user.lifecycle is not Lifecycle.LEAVER:
        return None
    return _Leaver(name, user.lifecycle_reason)


def _disable_partly(
    leaver: _Leaver, role: ActualRole, actual: ActualState, attrs: tuple[str, ...], out: Draft
) -> None:
    revoked = []
    for group in sorted(role.member_of):
        g = actual.roles.get(group)
        if g is None or g.marker is None or g.marker.kind is not RoleKind.GROUP:
            continue
        reason = Reason(
            leaver.reason.rule,
            f"{leaver.reason.text}; the role has {', '.join(attrs)}, so only its memberships can be revoked",
        )
        out.changes.append(
            make_change(
                ChangeKind.REVOKE_MEMBERSHIP, leaver.name, [reason], group=group,
                before={"member": True}, after={"member": False},
            )
        )
        revoked.append(group)
    left = sorted(set(role.member_of) - set(revoked))
    out.note(
        NoticeLevel.ERROR,
        INCOMPLETE_CODE,
        f"leaver {leaver.name} has {', '.join(attrs)}: provisioner cannot set NOLOGIN or VALID UNTIL, end its "
        "sessions or drop it (only a superuser may alter a superuser); "
        + (f"revoking its memberships of {', '.join(revoked)}; " if revoked else "")
        + (f"left for a DBA: memberships of {', '.join(left)}; " if left else "")
        + f"a superuser must run: ALTER ROLE {leaver.name} {' '.join('NO' + a for a in attrs)} NOLOGIN",
        leaver.name,
    )
