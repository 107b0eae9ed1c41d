"""One PostgreSQL change and the statements that carry it out (composed by
:mod:`provisioner.targets.pg_apply`, merged by :mod:`provisioner.targets.pg_bulk`)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from provisioner.core.values.plan import Change


@dataclass(frozen=True, slots=True)
class Step:
    """One change and the statements that carry it out."""

    change: Change
    statements: tuple[sql.Composed, ...]
    merge: tuple[str, str] | None = None
    """``("GRANT" | "REVOKE", group)`` for a plain membership change that may
    share one multi-member statement with others (``pg_bulk``)."""
