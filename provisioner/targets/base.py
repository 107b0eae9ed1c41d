"""The target contract: inspect the catalog, execute changes, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioner.core.model import ActualState
from provisioner.core.plan import Change


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[Change, ...]
    statements: int


class Target(Protocol):
    name: str

    def inspect(self, only: frozenset[str] | None = None) -> ActualState:
        """Read roles, options, markers and memberships in a constant number
        of catalog queries, in one consistent snapshot.  ``only``: a target may
        read just these roles (and then no privileges); reading more is allowed."""
        ...

    def apply(
        self, changes: Sequence[Change], on_change: Callable[[Change], None] | None = None
    ) -> ApplyResult:
        """Execute ``changes`` (already in execution order) in one transaction.

        On any failure roll back and raise :class:`provisioner.errors.ApplyFailed`
        naming the change that failed; the target is then as it was.
        """
        ...

    def close(self) -> None: ...
