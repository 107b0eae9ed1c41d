"""Plan-time refusal of changes that cannot work.  Pure.

A change the target would refuse is taken out of the plan and reported as an
error notice naming the identity or object, instead of failing at apply:

* a role name the database reserves or cannot hold as a login (``public``,
  ``none``, ``current_user`` ..., anything starting with ``pg_``), for a new
  role, a rename or a membership in it;
* a change to a superuser role, or to a membership in one, when the
  provisioner's own role is not a superuser (PostgreSQL: "must be superuser to
  alter superusers").  A membership OF a superuser member in an ordinary group
  is administered through the group and stays (a superuser leaver still loses
  it); only its ledger COMMENT on the member is dropped, which a non-superuser
  cannot write.

What is left of a refused identity's plan is dropped with it (its grants would
fail without the role).  Everything else -- a leaver's NOLOGIN above all --
stays in the plan.  (An identity whose name an existing unmanaged group or
business role holds is reported by the diff: error notice ``unmanaged``.)
The apply still isolates whatever the catalog refuses for reasons the plan
could not see (see :mod:`provisioner.targets.pg_apply`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from provisioner.core.values.model import ActualState, DesiredState
from provisioner.core.values.plan import Change, ChangeKind, Notice, NoticeLevel

RESERVED_NAMES = frozenset(
    {
        "public",
        "none",
        "current_user",
        "current_role",
        "session_user",
        "user",
        "all",
        "default",
        "system_user",
        "root",
        "mysql.sys",
        "mysql.session",
        "mysql.infoschema",
        "mariadb.sys",
    }
)
"""Names PostgreSQL or MariaDB reserve (or that would alias a built-in account)."""
RESERVED_PREFIXES = ("pg_",)


@dataclass(frozen=True, slots=True)
class Refused:
    role: str
    message: str


def reserved(name: str) -> str | None:
    """Why ``name`` can never be a managed role, or None."""
    if name.lower() in RESERVED_NAMES:
        return "a reserved role name"
    for prefix in RESERVED_PREFIXES:
        if name.lower().startswith(prefix):
            return f"names starting with {prefix!r} are reserved for PostgreSQL's built-in roles"
    return None


def _who(name: str, desired: DesiredState) -> str:
    user = desired.users.get(name)
    if user is None:
        return f"role {name!r}"
    return f"identity {user.username!r} ({user.stable_id}, source {user.source})"


def _superuser_guard(change: Change, state: ActualState, superuser: bool) -> str | None:
    if superuser:
        return None
    if change.kind in (ChangeKind.GRANT_MEMBERSHIP, ChangeKind.REVOKE_MEMBERSHIP):
        # A membership is administered through its group: a superuser MEMBER does not stop
        # provisioner from revoking it (issue 16: a superuser leaver loses what can be taken).
        group = state.roles.get(str(change.param("group")))
        if group is not None and group.superuser:
            return (
                f"{group.name!r} is a superuser role: only a superuser can grant or revoke it, and the "
                f"provisioner's role {state.session_role!r} is not (a DBA must revoke it by hand)"
            )
        return None
    role = state.roles.get(change.role)
    if role is not None and role.superuser:
        return f"{change.role!r} is a superuser and the provisioner's role {state.session_role!r} is not"
    return None


def _without_ledger(change: Change, state: ActualState, superuser: bool) -> Change:
    """A membership change of a superuser member, without its ledger COMMENT: only a
    superuser may COMMENT ON a superuser role, and the GRANT/REVOKE must not fail with it.
    (The member's ledger then keeps a stale entry until a DBA clears the attribute; the
    next plan re-writes it.)"""
    if superuser or change.kind not in (ChangeKind.GRANT_MEMBERSHIP, ChangeKind.REVOKE_MEMBERSHIP):
        return change
    role = state.roles.get(change.role)
    if role is None or not role.superuser or change.param("marker") is None:
        return change
    return replace(change, params=tuple((k, v) for k, v in change.params if k != "marker"))


def refuse_unworkable(
    changes: Sequence[Change], desired: DesiredState, state: ActualState
) -> tuple[tuple[Change, ...], tuple[Notice, ...]]:
    """``changes`` without those that cannot work on ``state``, and one error notice each."""
    session = state.roles.get(state.session_role)
    superuser = session is not None and session.superuser
    refused_roles: dict[str, str] = {}
    for change in changes:
        if change.kind in (ChangeKind.CREATE_ROLE, ChangeKind.RENAME_ROLE, ChangeKind.GRANT_MEMBERSHIP):
            name = str(change.param("group")) if change.kind is ChangeKind.GRANT_MEMBERSHIP else change.role
            why = reserved(name)
            if why is not None:  # a membership in a reserved name cannot work either (``grant all to ann``)
                refused_roles.setdefault(name, why)
    kept: list[Change] = []
    notices: list[Notice] = []
    for role, why in sorted(refused_roles.items()):
        message = f"{_who(role, desired)} maps to role name {role!r}: {why}; not provisioned"
        notices.append(Notice(NoticeLevel.ERROR, "unusable_name", message, role))
    for change in changes:
        if change.role in refused_roles or (
            change.kind is ChangeKind.GRANT_MEMBERSHIP and str(change.param("group")) in refused_roles
        ):
            continue
        why = _superuser_guard(change, state, superuser)
        if why is not None:
            notices.append(
                Notice(
                    NoticeLevel.ERROR,
                    "not_permitted",
                    f"{_who(change.role, desired)}: '{change.describe()}' refused: {why}",
                    change.role,
                )
            )
            continue
        kept.append(_without_ledger(change, state, superuser))
    return tuple(kept), tuple(notices)
