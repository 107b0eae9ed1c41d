"""The target contract: inspect the catalog, execute changes with the semantics the
target's capabilities declare; one change-failure error; one lock namer.

Implementations: :mod:`provisioner.targets.postgres`, :mod:`provisioner.targets.mysql`
and :mod:`provisioner.targets.memory` (no server; the conformance suite checks all three
against each other)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from provisioner.core.values.capabilities import Capabilities
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


def required(change: Change, key: str) -> Any:
    """The parameter ``key`` of ``change``; ValueError when it is missing (the change is
    then refused alone: it cannot be expressed)."""
    value = change.param(key)
    if value is None:
        raise ValueError(f"parameter {key!r} is missing")
    return value


LockPurpose = Literal["apply", "leader"]


def _lock_text(purpose: LockPurpose, target_name: str) -> str:
    return f"{'provisioner' if purpose == 'apply' else 'provisioner-leader'}:{target_name}"


def lock_name(purpose: LockPurpose, target_name: str) -> str:
    """The one name of a target's lock: ``provisioner:<target>`` serialises appliers,
    ``provisioner-leader:<target>`` elects the daemon replica that applies; at most 64
    characters (MariaDB's ``GET_LOCK``)."""
    return _lock_text(purpose, target_name)[:64]


def lock_key(purpose: LockPurpose, target_name: str) -> int:
    """The same lock as a stable signed 64-bit key (PostgreSQL advisory locks): the first
    eight bytes of the SHA-256 of its whole name."""
    digest = hashlib.sha256(_lock_text(purpose, target_name).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


RoleRows = dict[str, tuple[bytes, ActualRole]]
"""Role name -> (the server's key of its catalog row and memberships -- on PostgreSQL its oid,
hashes of its fixed fields, its comment's row version and its memberships' sums, see
targets/pg_inspect.py --, the role built from them): what the last inspect
built, so that the next one reads only the roles whose key changed and an unchanged role is
the very same object (the daemon's WarmState keeps one per target; the diff memo then reuses
per person)."""


class Target(Protocol):
    """One database server as the engine sees it.

    **Transaction semantics, per capability** (``capabilities.transactional``):

    * transactional (PostgreSQL): one :meth:`apply` is one transaction, taken under a
      transaction-scoped lock; each change runs under a savepoint, so a change the server
      refuses is rolled back alone while the rest commits together; a lost connection
      rolls everything back (``ChangeFailed.applied`` is 0), and ``on_change`` is called
      for each change once the transaction committed.
    * not transactional (MariaDB / MySQL): every account statement commits at once
      (autocommit); changes run one by one under a named lock, each ordered so that any
      prefix of its statements is safe (marker row before CREATE, ledger before GRANT and
      after REVOKE); a refused change is skipped; a lost connection leaves the changes
      before it committed (``ChangeFailed.applied`` says how many) and ``on_change`` is
      called after each change as it commits.  The next run re-inspects and converges.

    Either way a change the database refuses never stops the others, and the next
    inspect is the truth: nothing is remembered between calls but the catalog itself.
    """

    name: str

    @property
    def capabilities(self) -> Capabilities:
        """What this target can express (the same value its inspected state carries)."""
        ...

    def inspect(self, only: frozenset[str] | None = None, reuse: RoleRows | None = None) -> ActualState:
        """Read roles, options, markers and memberships in a constant number
        of catalog queries, in one consistent snapshot.  ``only``: a target may
        read just these roles (and then no privileges); reading more is allowed.
        ``reuse``: the roles the last inspect built (a target may ignore it), replaced
        by this one's; with ``only``, the entries of the roles read are refreshed."""
        ...

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        """Execute ``changes`` (already in execution order) with the transaction semantics
        of the class docstring: one transaction where ``capabilities.transactional``;
        otherwise statement by statement (MariaDB, see targets/mysql_apply.py).

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
        """A digest of the whole role catalog, or None where the target has none
        (``capabilities.catalog_digest``); the daemon's short-circuit compares it."""
        ...

    def inspect_if_moved(
        self, digest: str | None, reuse: RoleRows | None = None
    ) -> tuple[str | None, ActualState | None]:
        """The warm daemon's read: :meth:`catalog_digest` and, unless it equals ``digest`` (the
        digest the last full run's inspect was taken with; None: always), :meth:`inspect` with
        ``reuse`` -- taken in this order, or both in one snapshot (PostgreSQL), so that the
        inspect reads the very catalog the digest describes."""
        ...

    def committed(self, transaction: str) -> bool | None:
        """Whether the transaction ``on_begin`` named committed; None when the
        target cannot tell (too old, or not transactional)."""
        ...

    def close(self) -> None: ...
