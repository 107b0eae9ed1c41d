"""MariaDB default roles: which role is active when a managed user logs in.  Pure: no I/O.

MariaDB activates no role at login unless one is the account's DEFAULT ROLE, and an
account has at most one.  A target that reports ``ActualState.default_roles`` (user name ->
its current default role; users without one absent) gets, after the membership diff, one
``alter_role`` change with the parameter ``default_role`` (a role name, or null for
``NONE``) per managed user whose default should change:

* the user ends the plan holding exactly one managed role: that role;
* several managed roles: the current default is kept when it is one of them (MariaDB
  cannot enable several at login; the user runs ``SET ROLE``), otherwise none; a warning
  ``mysql_default_role`` names the user whenever the plan changes such a user's roles;
* a current default the user holds outside the rules (granted by hand) is never changed;
* a current default that is a managed role the user no longer holds is cleared.

"Managed role" means a group role the rules grant or one carrying a group marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

from provisioner.core.values.model import ActualState, DesiredState, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Notice, NoticeLevel, make_change

CODE = "mysql_default_role"


def _managed_groups(desired: DesiredState, actual: ActualState, changes: Iterable[Change]) -> set[str]:
    groups = set(desired.groups)
    groups.update(n for n, r in actual.roles.items() if r.marker is not None and r.marker.kind is RoleKind.GROUP)
    groups.update(c.role for c in changes if c.kind is ChangeKind.CREATE_ROLE and c.param("role_kind") == "group")
    return groups


def default_role_changes(
    desired: DesiredState, actual: ActualState, changes: Iterable[Change], untouchable: AbstractSet[str]
) -> tuple[list[Change], list[Notice]]:
    """The default-role changes and notices for the planned ``changes`` (see module doc).
    Users in ``untouchable`` (protected, break-glass) and users the rules do not
    describe (held, vanishing) are left alone unless the plan changes their roles."""
    current_defaults: Mapping[str, str] = actual.default_roles or {}
    planned = list(changes)
    managed = _managed_groups(desired, actual, planned)
    users: dict[str, str] = {}  # resulting user name -> its name in the actual state
    touched: set[str] = set()
    gained: dict[str, set[str]] = {}
    lost: dict[str, set[str]] = {}
    for c in planned:
        if c.kind is ChangeKind.CREATE_ROLE and c.param("role_kind") == "user":
            users[c.role] = c.role
            touched.add(c.role)
        elif c.kind is ChangeKind.RENAME_ROLE:
            users[c.role] = str(c.param("old_name"))
        elif c.kind in (ChangeKind.GRANT_MEMBERSHIP, ChangeKind.REVOKE_MEMBERSHIP):
            box = gained if c.kind is ChangeKind.GRANT_MEMBERSHIP else lost
            box.setdefault(c.role, set()).add(str(c.param("group")))
            touched.add(c.role)
    dropped = {c.role for c in planned if c.kind is ChangeKind.DROP_ROLE}
    for name in desired.users:
        role = actual.roles.get(name)
        if role is not None and role.marker is not None and role.marker.kind is RoleKind.USER:
            users.setdefault(name, name)
    for name in touched:
        users.setdefault(name, name)
    old_names = {old for new, old in users.items() if new != old}
    out: list[Change] = []
    notices: list[Notice] = []
    for name in sorted(users):
        if name in dropped or name in old_names or name in desired.held or users[name] in untouchable:
            continue
        was = users[name]
        role = actual.roles.get(was)
        held = set(role.member_of) if role is not None else set()
        held = (held | gained.get(name, set())) - lost.get(name, set())
        mine = {g for g in held if g in managed}
        current = current_defaults.get(was) or None
        want = _wanted(current, mine, held, managed)
        if want != current:
            out.append(_change(name, current, want, mine))
        if len(mine) > 1 and (name in touched or want != current):
            notices.append(
                Notice(
                    NoticeLevel.WARNING,
                    CODE,
                    f"{name} holds {len(mine)} managed roles ({', '.join(sorted(mine))}); MariaDB activates at "
                    f"most one at login: default role {want or 'none'}, the others need SET ROLE",
                    name,
                )
            )
    return out, notices


def _wanted(current: str | None, mine: set[str], held: set[str], managed: set[str]) -> str | None:
    if current is not None and current in held and current not in managed:
        return current  # set by hand to a role granted by hand: not ours
    if len(mine) == 1:
        return next(iter(mine))
    if current is not None and (current in mine or current not in managed):
        return current
    return None


def _change(name: str, current: str | None, want: str | None, mine: set[str]) -> Change:
    if want is None:
        why = f"{current!r} is no longer one of its managed roles" if mine else "it holds no managed role"
    elif len(mine) == 1:
        why = f"{want!r} is its only managed role"
    else:
        why = f"{want!r} is one of its managed roles"
    reason = Reason("default_role", f"default role of {name}: {why}")
    return make_change(
        ChangeKind.ALTER_ROLE,
        name,
        [reason],
        default_role=want,
        before={"default_role": current},
        after={"default_role": want},
    )
