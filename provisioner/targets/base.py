"""The target contract: inspect the catalog, execute changes, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioner.core.model import ActualState
from provisioner.core.plan import Change


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


class Target(Protocol):
    name: str

    def inspect(self, only: frozenset[str] | None = None) -> ActualState:
        """Read roles, options, markers and memberships in a constant number
        of catalog queries, in one consistent snapshot.  ``only``: a target may
        read just these roles (and then no privileges); reading more is allowed."""
        ...

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        """Execute ``changes`` (already in execution order) in one transaction.

        A change the database refuses (a reserved name, an object the account
        cannot grant on ...) is isolated: it is skipped, returned in
        ``ApplyResult.failed`` with the database's message, and every other change
        still applies.  A lost connection or lock, or anything that cannot be
        pinned to one change, rolls back and raises
        :class:`provisioner.errors.ApplyFailed`.

        ``on_begin`` is called once the target holds its apply lock, before the
        first change, with the id of the transaction about to commit (PostgreSQL:
        ``pg_current_xact_id()``) or None where statements commit one by one
        (MariaDB).  The caller records it durably: crash recovery asks
        :meth:`committed` about it instead of guessing from the catalog.
        """
        ...

    def committed(self, transaction: str) -> bool | None:
        """Whether the transaction ``on_begin`` named committed; None when the
        target cannot tell (too old, or not transactional)."""
        ...

    def close(self) -> None: ...
