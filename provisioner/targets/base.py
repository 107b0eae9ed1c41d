"""The target contract: inspect the catalog, execute changes, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from provisioner.core.values.model import ActualRole, ActualState
from provisioner.core.values.plan import Change
from provisioner.errors import ApplyFailed


class ChangeFailed(ApplyFailed):
    """The one change-failure error of every target: an :class:`ApplyFailed` naming the
    change (None when it cannot be known: a lost connection, the apply lock) and how many
    changes were applied and committed before it (0 on a transactional target, whose
    failure rolls everything back)."""

    def __init__(self, message: str, change: Change | None, applied: int = 0) -> None:
        super().__init__(message)
        self.change = change
        self.applied = applied


@dataclass(frozen=True, slots=True)
class FailedChange:
    """A change the target refused, isolated from the rest of its transaction."""

    change: Change
    error: str
    """The database's own message."""

    def describe(self) -> str:
        return f"{self.change.describe()}: {self.error}"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[Change, ...]
    statements: int
    failed: tuple[FailedChange, ...] = ()
    """Changes that failed alone and were skipped; everything in ``applied`` committed."""


RoleRows = dict[str, tuple[tuple[Any, ...], frozenset[str], ActualRole]]
"""Role name -> (its catalog row, its memberships, the role built from them): what the
last inspect built, so an unchanged role is the very same object the next time (the
daemon's WarmState keeps one per target; the diff memo then reuses per person)."""


class Target(Protocol):
    name: str

    def inspect(self, only: frozenset[str] | None = None, reuse: RoleRows | None = None) -> ActualState:
        """Read roles, options, markers and memberships in a constant number
        of catalog queries, in one consistent snapshot.  ``only``: a target may
        read just these roles (and then no privileges); reading more is allowed.
        ``reuse``: the roles the last inspect built (a target may ignore it), replaced
        by this one's."""
        ...

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        """Execute ``changes`` (already in execution order): in one transaction where
        ``capabilities.transactional``; otherwise statement by statement, each change
        ordered so that any prefix of it is safe (MariaDB, see targets/mysql_apply.py).

        A change the database refuses (a reserved name, an object the account
        cannot grant on ...) is isolated: it is skipped, returned in
        ``ApplyResult.failed`` with the database's message, and every other change
        still applies.  A lost connection or lock, or anything that cannot be
        pinned to one change, rolls back (where transactional) and raises
        :class:`ChangeFailed`.

        ``on_begin`` is called once the target holds its apply lock, before the
        first change, with the id of the transaction about to commit (PostgreSQL:
        ``pg_current_xact_id()``) or None where statements commit one by one
        (MariaDB).  The caller records it durably: crash recovery asks
        :meth:`committed` about it instead of guessing from the catalog.
        """
        ...

    def catalog_digest(self) -> str | None:
        """A cheap, order-independent digest of the whole role catalog, or None where the
        target has none (``capabilities.catalog_digest``); the daemon's short-circuit compares it."""
        ...

    def committed(self, transaction: str) -> bool | None:
        """Whether the transaction ``on_begin`` named committed; None when the
        target cannot tell (too old, or not transactional)."""
        ...

    def close(self) -> None: ...
