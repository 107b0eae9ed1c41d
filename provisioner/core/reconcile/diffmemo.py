"""What the last diff planned for each person, reused while nothing it read changed.

A warm daemon diffs 100,000 people against an actual state whose unchanged roles are
the very same objects (a reused actual state, or a fresh inspect that took the roles
of the last one again: targets/base.py ``RoleRows``) and, for everyone the directory
did not change, the very same :class:`DesiredUser` object (the grant memo hands it
back).  For such a person the diff's output is what it was last time, provided the
roles it read are the same objects -- the person's own role and the group roles it
looked at for revocations (:data:`Read`) -- and everything else the per-person diff
reads is equal: the policy, the refused groups, the renames, whether the target can
expire accounts and the session role.  Leavers are never reused: their changes depend
on the clock and on open sessions.  Nor is a person with changes: applying them replaces
the roles the diff read, so the record could only hold memory (a first sync's 300,000
changes) in a warm process; a plan-only daemon diffs such people again each run.

Pure: no I/O; a memo is plain dictionaries the shell may keep or drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.core.values.model import ActualState, DesiredUser
from provisioner.core.values.plan import Change, Notice

Read = tuple[tuple[str, Any], ...]
"""The roles one person's diff read: (name, the role object or None), compared by identity."""
Planned = tuple[DesiredUser, tuple[Change, ...], tuple[Notice, ...], Read]


def still_read(read: Read, roles: Mapping[str, Any]) -> bool:
    """Every role the person's last diff read is the very same object (or still absent)."""
    return all(roles.get(name) is role for name, role in read)


@dataclass(slots=True)
class _Target:
    context: tuple[Any, ...]
    planned: dict[str, Planned]


@dataclass(slots=True)
class DiffMemo:
    """Per target, the last diff's output per person (see the module docstring)."""

    _targets: dict[str, _Target] = field(default_factory=dict)
    hits: int = 0

    def begin(self, actual: ActualState, context: tuple[Any, ...]) -> tuple[dict[str, Planned], dict[str, Planned]]:
        """(what may be reused, where this diff records its own); the old record is
        dropped when the context differs (the roles are checked per person)."""
        last = self._targets.get(actual.target)
        usable = last is not None and last.context == context
        fresh: dict[str, Planned] = {}
        self._targets[actual.target] = _Target(context, fresh)
        return (last.planned if usable and last is not None else {}), fresh
