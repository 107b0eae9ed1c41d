"""SoD exceptions running out.  Pure.

* ``warn_before_expiry_days`` (per policy, default 14) before an exception
  expires, every plan carries a ``sod_exception_expiring`` warning for it (an
  alert when the run closes), so the owner renews it or removes the access in time.
* Once it has expired while the conflict is still present, every plan carries a
  ``sod_exception_expired`` error (a critical alert); with the policy's
  ``on_expiry = "revoke"`` the plan also revokes the memberships that give the
  policy's other sides (the first side listed is the duty the person keeps).
  A rule that asks for the revoked role again is then withheld by SoD.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from provisioner.core.governance.sod import Policy, SodException
from provisioner.core.governance.sodeval import Conflict
from provisioner.core.ownership.ledger import mine
from provisioner.core.ownership.policy import DiffPolicy, is_protected
from provisioner.core.values.model import ActualState, DesiredState, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Draft, Notice, NoticeLevel, TargetPlan, make_change

EXPIRING_CODE = "sod_exception_expiring"
EXPIRED_CODE = "sod_exception_expired"


def expiring_notices(
    policies: Sequence[Policy], exceptions: Sequence[SodException], desired: DesiredState, now: datetime
) -> list[Notice]:
    """A warning per exception that expires within its policy's warning window."""
    by_id = {p.id: p for p in policies if p.enabled}
    logins = {u.username.casefold(): n for n, u in desired.users.items()}
    logins.update({u.stable_id.casefold(): n for n, u in desired.users.items()})
    out = []
    for exc in exceptions:
        policy = by_id.get(exc.policy)
        if policy is None:
            continue
        left = (exc.expires - now.date()).days
        if 0 <= left <= policy.warn_days:
            when = "today" if left == 0 else f"in {left} day(s)"
            out.append(
                Notice(
                    NoticeLevel.WARNING,
                    EXPIRING_CODE,
                    f"SoD {exc.describe()} for policy {policy.id!r} expires {when} ({exc.expires.isoformat()}): "
                    f"renew it or remove the conflicting access (then: on_expiry = {policy.on_expiry})",
                    logins.get(exc.identity.casefold()),
                )
            )
    return out


def not_revocable(user: str, state: ActualState | None, policy: DiffPolicy | None) -> str | None:
    """Why ``user``'s memberships are not provisioner's to revoke, or None: only this
    installation's managed login roles that are not protected (nor break-glass) are changed."""
    if state is None or policy is None:
        return None
    role = state.roles.get(user)
    if role is None:
        return "not a role on this target"
    if is_protected(role, state, policy):
        return "a protected or break-glass role, never changed"
    m = mine(role, policy.instance)
    if m is None or m.kind is not RoleKind.USER:
        owner = "another installation's" if role.marker is not None and m is None else "not a managed login"
        return f"{owner} role, never changed by this installation"
    return None


def expired_actions(
    tp: TargetPlan, present: Sequence[Conflict], state: ActualState | None = None, policy: DiffPolicy | None = None
) -> tuple[list[Change], list[Notice]]:
    """Error notices (and, under ``on_expiry = "revoke"``, revokes) for conflicts
    whose exception has expired; ``present`` are the target's detected conflicts.
    With ``state`` and ``policy``, a role provisioner never changes (protected,
    break-glass, unmanaged or another installation's) gets the notice only."""
    out = Draft()
    planned = {(c.role, str(c.param("group"))) for c in tp.changes if c.kind is ChangeKind.REVOKE_MEMBERSHIP}
    for c in present:
        if c.exception is not None or not c.expired:
            continue
        latest = max(c.expired, key=lambda e: e.expires)
        head = (
            f"SoD policy {c.policy.id!r} ({c.policy.severity}): {c.username} ({c.user}) still holds the conflicting "
            f"access after the exception EXPIRED on {latest.expires.isoformat()} ({latest.file}:{latest.line})"
        )
        if c.policy.on_expiry != "revoke":
            out.note(NoticeLevel.ERROR, EXPIRED_CODE, f"{head}; on_expiry = report: nothing revoked", c.user)
            continue
        keep = c.policy.sides[0]
        groups = sorted({h.path[0] for h in c.holdings if h.side != keep and h.path})
        direct = [h for h in c.holdings if h.side != keep and not h.path]
        why_not = not_revocable(c.user, state, policy)
        if why_not is not None:
            held = ", ".join([*groups, *(h.describe() for h in direct)]) or "nothing"
            out.note(
                NoticeLevel.ERROR,
                EXPIRED_CODE,
                f"{head}; on_expiry = revoke, but {c.user!r} is {why_not}: nothing revoked, left for a human: {held}",
                c.user,
            )
            continue
        for group in groups:
            if (c.user, group) in planned:
                continue
            reason = Reason(
                f"sod-expiry:{c.policy.id}",
                f"SoD exception for {c.username} on policy {c.policy.id!r} expired on {latest.expires.isoformat()} "
                f"(on_expiry = revoke; {latest.file}:{latest.line})",
            )
            out.changes.append(
                make_change(ChangeKind.REVOKE_MEMBERSHIP, c.user, [reason], group=group,
                            before={"member": True}, after={"member": False})
            )
        left = f"; left for a human: {', '.join(h.describe() for h in direct)}" if direct else ""
        out.note(
            NoticeLevel.ERROR,
            EXPIRED_CODE,
            f"{head}; on_expiry = revoke: revoking {', '.join(groups) or 'nothing'} ({keep.describe()} is kept){left}",
            c.user,
        )
    return out.changes, out.notices
