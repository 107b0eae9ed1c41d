"""Renames: a role follows its stable id to the identity's new username.  Pure: no I/O.

A rename into a name another rename frees in the same run is planned too (renames run
first, chains in order: core/values/plan.py); a new name taken by any other role blocks the
rename (reported), and the identity is planned under its role's old name meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.core.ownership.ledger import owners
from provisioner.core.values.model import ActualRole, ActualState, DesiredState, Reason
from provisioner.core.values.plan import ChangeKind, Draft, NoticeLevel, make_change


def plan_renames(
    desired: DesiredState,
    actual: ActualState,
    protected: Callable[[ActualRole], bool],
    instance: str | None,
    out: Draft,
) -> tuple[dict[str, str], dict[str, str]]:
    """Map new name -> old name for identities whose username changed; and, for those whose
    new name is taken by another role, new name -> old name to plan them under (``stuck``)."""
    by_id = owners(actual, instance)
    wanted: dict[str, ActualRole] = {}
    for name, user in desired.users.items():  # in any order: ``wanted`` is read in name order below
        old = by_id.get((user.source, user.stable_id))
        if old is None or old.name == name or name in desired.held:
            continue
        if old.name in desired.held or protected(old):
            continue
        # the old name may be wanted by a newcomer (a reused username): the role goes with
        # its stable id all the same; the newcomer gets the name once it is free
        wanted[name] = old
    renamed: dict[str, str] = {}
    progress = True
    while progress:  # a name another rename frees this run is free (chains; never a cycle)
        progress = False
        vacated = set(renamed.values())
        for name, old in sorted(wanted.items()):
            if name not in renamed and (name not in actual.roles or name in vacated):
                renamed[name] = old.name
                progress = True
    stuck: dict[str, str] = {}
    for name, old in sorted(wanted.items()):
        user = desired.users[name]
        if name not in renamed:
            stuck[name] = old.name
            out.note(
                NoticeLevel.WARNING,
                "rename_blocked",
                f"identity {user.stable_id} is now {user.username!r}, but role {name!r} exists (another identity's "
                f"or not provisioner's); its role keeps the name {old.name!r} until {name!r} is free",
                old.name,
            )
            continue
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
    return renamed, stuck
