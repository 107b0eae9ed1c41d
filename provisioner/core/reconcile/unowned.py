"""An identity's role name held by a role that is not this identity's to manage.  Pure.

The diff changes a login role only when its marker names this installation and this very
identity (source + stable id).  Otherwise the role is never touched, and the plan says why:
``protected``, ``unmanaged`` (no marker: a DBA's role; an error when it is a group or
business role, or when the identity has left but the login still works), ``foreign``
(another installation's), ``conflict`` (another identity's: a reused username, a name
that collides after normalisation)."""

from __future__ import annotations

from provisioner.core.ownership.ledger import is_foreign
from provisioner.core.ownership.policy import DiffPolicy, is_protected
from provisioner.core.values.model import ActualRole, ActualState, DesiredUser, Lifecycle, RoleKind
from provisioner.core.values.plan import Notice, NoticeLevel


def not_ours(user: DesiredUser, role: ActualRole, actual: ActualState, policy: DiffPolicy) -> Notice | None:
    """The notice saying why ``role`` (the one ``user``'s name maps to) is not touched, or
    None when it is ``user``'s own managed role."""
    who = f"{user.username!r} ({user.stable_id})"
    if is_protected(role, actual, policy):
        message = f"identity {user.username!r} maps to protected role {role.name!r}; not touched"
        return Notice(NoticeLevel.ERROR, "protected", message, role.name)
    if role.marker is None and role.login and user.lifecycle is not Lifecycle.ACTIVE:
        message = (  # never changed, but a leaver who can still log in is an error in every plan
            f"{who} has left ({user.lifecycle_reason.text}) but role {role.name!r}, made outside "
            "provisioner, can still log in; not touched: disable it by hand"
        )
        return Notice(NoticeLevel.ERROR, "unmanaged", message, role.name)
    if role.marker is None:  # a DBA's login: a warning; a business or group role: the identity cannot have it
        message = f"role {role.name!r} exists but is not managed by provisioner; not touched" + (
            "" if role.login else f" (identity {who} is not provisioned)"
        )
        return Notice(NoticeLevel.WARNING if role.login else NoticeLevel.ERROR, "unmanaged", message, role.name)
    m = role.marker
    if is_foreign(m, policy.instance):
        message = f"role {role.name!r} belongs to provisioner installation {m.instance!r}; {who} not provisioned here"
        return Notice(NoticeLevel.ERROR, "foreign", message, role.name)
    if m.kind is not RoleKind.USER:
        message = (
            f"role name {role.name!r} is a group role provisioner manages; identity {who} ({user.source}) "
            "not provisioned (rename one of them in the source, or change [naming])"
        )
        return Notice(NoticeLevel.ERROR, "conflict", message, role.name)
    if m.stable_id != user.stable_id or (m.source and m.source != user.source):
        message = (
            f"role name {role.name!r} belongs to identity {m.stable_id} of source {m.source}; newcomer "
            f"{user.username!r} ({user.stable_id}, {user.source}) rejected: a role never passes to another "
            "identity (rename one of them in the source, or change [naming])"
        )
        return Notice(NoticeLevel.ERROR, "conflict", message, role.name)
    return None


def group_named(user: DesiredUser) -> list[Notice]:
    """An active identity whose role name the rules grant as a group role (created in its
    place): refused, never a login beside the group (MariaDB would make both)."""
    if user.lifecycle is not Lifecycle.ACTIVE:
        return []
    message = (
        f"identity {user.username!r} ({user.stable_id}, {user.source}) maps to role name {user.name!r}, which the "
        "rules grant as a group role; not provisioned (rename one of them in the source, or change [naming])"
    )
    return [Notice(NoticeLevel.ERROR, "conflict", message, user.name)]


def reached_through(group: str, actual: ActualState) -> list[str]:
    """Every role ``group`` is a member of, transitively (what a hand grant of ``group`` also gives)."""
    seen: set[str] = set()
    todo = [group]
    while todo:
        role = actual.roles.get(todo.pop())
        for parent in role.member_of if role is not None else ():
            if parent not in seen and parent != group:
                seen.add(parent)
                todo.append(parent)
    return sorted(seen)
