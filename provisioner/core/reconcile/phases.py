"""Access removal first: which changes end or limit access, and the apply phases.

Pure.  A target's changes are applied in two phases, each its own
transaction(s): first every change that ends or limits access (NOLOGIN, an
earlier VALID UNTIL, ending sessions, revoking memberships and privileges),
then everything else (creates, renames, grants, markers).  A fault in a grant
or a create can then never hold back a leaver: the removals have committed
before the first grant runs.

A removal of a role that the same plan creates or renames waits for the second
phase (the role does not exist under that name before it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from provisioner.core.values.plan import Change, ChangeKind

REMOVAL_KINDS = frozenset({ChangeKind.TERMINATE_SESSIONS, ChangeKind.REVOKE_MEMBERSHIP, ChangeKind.REVOKE_PRIVILEGE})


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value == "infinity":
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def limits_validity(change: Change) -> bool:
    """An ALTER ROLE that sets VALID UNTIL earlier than it was (or where there was none)."""
    if change.kind is not ChangeKind.ALTER_ROLE or "valid_until" not in dict(change.params):
        return False
    after = _instant(change.param("valid_until"))
    if after is None:
        return False
    before = _instant(dict(change.before).get("valid_until"))
    if before is None:
        return True
    try:
        return after < before
    except TypeError:  # naive against aware: treat as a limit, the safe reading
        return True


def ends_login(change: Change) -> bool:
    return change.kind is ChangeKind.ALTER_ROLE and change.param("login", True) is False


def removes_access(change: Change) -> bool:
    """The change ends or limits someone's access (and grants nothing)."""
    if change.kind in REMOVAL_KINDS:
        return True
    if change.kind is not ChangeKind.ALTER_ROLE or change.param("login") is True:
        return False
    return ends_login(change) or limits_validity(change)


def apply_phases(changes: Sequence[Change]) -> tuple[tuple[Change, ...], tuple[Change, ...]]:
    """``(removals, rest)``, each keeping the given (execution) order."""
    pending = _created_or_renamed(changes)
    first = tuple(c for c in changes if removes_access(c) and c.role not in pending)
    taken = set(map(id, first))
    return first, tuple(c for c in changes if id(c) not in taken)


def _created_or_renamed(changes: Iterable[Change]) -> frozenset[str]:
    return frozenset(c.role for c in changes if c.kind in (ChangeKind.CREATE_ROLE, ChangeKind.RENAME_ROLE))
