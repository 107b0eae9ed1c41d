"""What the last diff planned for each person, reused while nothing it read changed.

A warm daemon diffs 100,000 people against the very same actual state it reused
(the catalog digest was unchanged) and, for everyone the directory did not
change, the very same :class:`DesiredUser` object (the grant memo hands it back).
For such a person the diff's output is what it was last time, provided the
target's roles mapping is the same object and everything else the per-person
diff reads is equal: the policy, the refused groups, the renames, whether the
target can expire accounts and the session role.  Leavers are never reused:
their changes depend on the clock and on open sessions.

Pure: no I/O; a memo is plain dictionaries the shell may keep or drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.core.values.model import ActualState, DesiredUser
from provisioner.core.values.plan import Change, Notice

Planned = tuple[DesiredUser, tuple[Change, ...], tuple[Notice, ...]]


@dataclass(slots=True)
class _Target:
    roles: Mapping[str, Any]
    context: tuple[Any, ...]
    planned: dict[str, Planned]


@dataclass(slots=True)
class DiffMemo:
    """Per target, the last diff's output per person (see the module docstring)."""

    _targets: dict[str, _Target] = field(default_factory=dict)
    hits: int = 0

    def begin(self, actual: ActualState, context: tuple[Any, ...]) -> tuple[dict[str, Planned], dict[str, Planned]]:
        """(what may be reused, where this diff records its own); the old record is
        dropped when the roles mapping or the context differ."""
        last = self._targets.get(actual.target)
        usable = last is not None and last.roles is actual.roles and last.context == context
        fresh: dict[str, Planned] = {}
        self._targets[actual.target] = _Target(actual.roles, context, fresh)
        return (last.planned if usable and last is not None else {}), fresh
