"""Turning changes into SQL, and executing them in batches.

Every identifier is composed with :class:`psycopg.sql.Identifier` and every
value with :class:`psycopg.sql.Literal`; no SQL text is ever built by string
formatting.

Statements are sent many per round trip: a batch of up to ``batch_size``
statements is joined with ``;`` and executed as one simple query after a
``SAVEPOINT`` of its own (one more round trip) and ending with ``RELEASE``.
When a batch fails, the batch is rolled back to its savepoint and replayed one
change at a time, each under its own savepoint: a change the server refuses is
rolled back alone and reported, the others apply (see :class:`BatchRunner`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import psycopg
from psycopg import sql

from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import Marker
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.targets.base import ChangeFailed, FailedChange, required
from provisioner.targets.pg_bulk import bulk_batches, by_group, merged_statements
from provisioner.targets.pg_privileges import privilege_statements
from provisioner.targets.pg_step import Step as Step

DEFAULT_BATCH_SIZE = 500

Grantors = Mapping[tuple[str, str], tuple[str, ...]]
"""(member, group) -> every grantor of that membership (PostgreSQL 16+)."""

_SAVEPOINT = sql.SQL("SAVEPOINT provisioner_batch")
_RELEASE = sql.SQL("RELEASE SAVEPOINT provisioner_batch")
_ROLLBACK_TO = sql.SQL("ROLLBACK TO SAVEPOINT provisioner_batch")




# --------------------------------------------------------------------------- composing


def _ident(name: Any) -> sql.Identifier:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a role name must be a non-empty string, got {name!r}")
    return sql.Identifier(name)


def marker_comment(value: Any) -> str | None:
    """The COMMENT text for a marker given as JSON (``Marker.to_json``)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"marker must be an object, got {type(value).__name__}")
    return marker_codec.encode(Marker.from_json(value))


def _ledger(change: Change) -> tuple[sql.Composed, ...]:
    """A membership change carries the member's marker with its updated ledger (the
    groups provisioner granted): written in the same transaction as the GRANT/REVOKE."""
    text = marker_comment(change.param("marker"))
    return () if text is None else (_comment(_ident(change.role), text),)


@cache
def _kw(text: str) -> sql.SQL:
    """A constant SQL fragment of this module (never data)."""
    return sql.SQL(text)


def _stmt(*parts: str | sql.Composable) -> sql.Composed:
    """Concatenate constant fragments (``str``) with identifiers and literals.

    Cheaper than ``SQL.format`` (no template parsing), which matters for
    tens of thousands of statements."""
    return sql.Composed([_kw(p) if isinstance(p, str) else p for p in parts])


def _comment(role: sql.Identifier, text: str | None) -> sql.Composed:
    return _stmt("COMMENT ON ROLE ", role, " IS ", sql.Literal(text))


def _create(change: Change) -> tuple[sql.Composed, ...]:
    role = _ident(change.role)
    parts: list[str | sql.Composable] = ["CREATE ROLE ", role]
    parts.append(" WITH LOGIN" if change.param("login") else " WITH NOLOGIN")
    until = change.param("valid_until")
    if until is not None:
        parts += [" VALID UNTIL ", sql.Literal(str(until))]
    out = [_stmt(*parts)]
    text = marker_comment(change.param("marker"))
    if text is not None:
        out.append(_comment(role, text))
    return tuple(out)


def _alter(change: Change) -> tuple[sql.Composed, ...]:
    params = dict(change.params)
    parts: list[str | sql.Composable] = []
    if params.get("login") is not None:
        parts.append(" LOGIN" if params["login"] else " NOLOGIN")
    if "valid_until" in params:
        until = params["valid_until"]
        parts += [" VALID UNTIL ", sql.Literal(str(until) if until else "infinity")]
    if not parts:
        return ()
    return (_stmt("ALTER ROLE ", _ident(change.role), " WITH", *parts),)


def _grant(change: Change) -> tuple[sql.Composed, ...]:
    group = _ident(required(change, "group"))
    return (_stmt("GRANT ", group, " TO ", _ident(change.role)), *_ledger(change))


def _revoke(change: Change, grantors: Grantors | None) -> tuple[sql.Composed, ...]:
    group_name = required(change, "group")
    group, role = _ident(group_name), _ident(change.role)
    seen = (grantors or {}).get((change.role, group_name), ())
    if not seen:  # PostgreSQL <= 15, or nothing to revoke (the server warns)
        return (_stmt("REVOKE ", group, " FROM ", role), *_ledger(change))
    return (
        *(_stmt("REVOKE ", group, " FROM ", role, " GRANTED BY ", _ident(grantor)) for grantor in seen),
        *_ledger(change),
    )


def _set_marker(change: Change) -> tuple[sql.Composed, ...]:
    return (_comment(_ident(change.role), marker_comment(change.param("marker"))),)


def _rename(change: Change) -> tuple[sql.Composed, ...]:
    old = _ident(required(change, "old_name"))
    return (_stmt("ALTER ROLE ", old, " RENAME TO ", _ident(change.role)),)


def _terminate(change: Change) -> tuple[sql.Composed, ...]:
    # Runs after the NOLOGIN of the same transaction and once more after COMMIT
    # (pg_terminate_backend is not transactional; see PostgresTarget.apply).
    # Waits up to 5 s for each backend to exit.  Without pg_signal_backend it
    # terminates nothing instead of aborting the disable; verify then reports
    # the sessions still open.
    query = _stmt(
        "SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity"
        " WHERE usename = ",
        sql.Literal(change.role),
        " AND pid <> pg_catalog.pg_backend_pid()"
        " AND pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE')",
    )
    return (query,)


def _drop(change: Change) -> tuple[sql.Composed, ...]:
    role = _ident(change.role)
    heir = change.param("reassign_to")
    new_owner: str | sql.Composable = "CURRENT_USER" if heir is None else _ident(heir)
    return (
        _stmt("REASSIGN OWNED BY ", role, " TO ", new_owner),
        _stmt("DROP OWNED BY ", role),
        _stmt("DROP ROLE ", role),
    )


_COMPOSERS: dict[ChangeKind, Callable[[Change], tuple[sql.Composed, ...]]] = {
    ChangeKind.CREATE_ROLE: _create,
    ChangeKind.ALTER_ROLE: _alter,
    ChangeKind.GRANT_MEMBERSHIP: _grant,
    ChangeKind.SET_MARKER: _set_marker,
    ChangeKind.RENAME_ROLE: _rename,
    ChangeKind.TERMINATE_SESSIONS: _terminate,
    ChangeKind.DROP_ROLE: _drop,
    ChangeKind.GRANT_PRIVILEGE: privilege_statements,
    ChangeKind.REVOKE_PRIVILEGE: privilege_statements,
}


def compose(change: Change, grantors: Grantors | None = None) -> Step:
    """The statements for ``change``; :class:`ChangeFailed` if it cannot be
    expressed (unknown kind, malformed parameters)."""
    try:
        if change.kind is ChangeKind.REVOKE_MEMBERSHIP:
            group = str(required(change, "group"))
            plain = not (grantors or {}).get((change.role, group))
            return Step(change, _revoke(change, grantors), ("REVOKE", group) if plain else None)
        composer = _COMPOSERS.get(change.kind)
        if composer is None:
            raise ValueError(f"change kind {change.kind.value!r} is not supported by this target")
        if change.kind is ChangeKind.GRANT_MEMBERSHIP:
            return Step(change, composer(change), ("GRANT", str(required(change, "group"))))
        return Step(change, composer(change))
    except (ValueError, KeyError, TypeError) as exc:
        raise ChangeFailed(f"change {change.describe()} cannot be applied: {exc}", change) from exc


def revoke_pairs(changes: Sequence[Change]) -> list[tuple[str, str]]:
    pairs = {(c.role, str(c.param("group"))) for c in changes if c.kind is ChangeKind.REVOKE_MEMBERSHIP}
    return sorted(pairs)


# --------------------------------------------------------------------------- executing


def batches(steps: Sequence[Step], size: int) -> Iterator[Sequence[Step]]:
    """Consecutive runs of steps needing at most ``size`` statements each once
    membership changes are merged per group role (:mod:`pg_bulk`; runs of them
    ordered by group role first); a step is never split, a step larger than
    ``size`` forms its own batch."""
    return bulk_batches(by_group(steps), size)


def pg_message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return str(primary or exc).strip()


class BatchRunner:
    """Executes steps inside the caller's open transaction.

    A batch that fails is rolled back to its savepoint and replayed one step at
    a time, each under its own savepoint: a step the server refuses is rolled
    back alone and returned as a :class:`FailedChange` (with the server's
    message) while every other step of the batch still applies.  A lost
    connection raises :class:`ChangeFailed` (the server rolled everything back)."""

    def __init__(self, conn: psycopg.Connection[Any], batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.conn = conn
        self.batch_size = max(1, batch_size)
        self.statements = 0
        self.round_trips = 0
        self.uncreated: set[str] = set()
        """Roles whose CREATE failed: their later changes are skipped, never applied to a namesake."""

    def run(self, steps: Sequence[Step]) -> list[FailedChange]:
        failed: list[FailedChange] = []
        for batch in batches(steps, self.batch_size):
            kept = [step for step in batch if step.change.role not in self.uncreated]
            failed += [_skipped(step.change) for step in batch if step.change.role in self.uncreated]
            failed += self._run_batch(kept)
        return failed

    def _execute(self, query: sql.Composed | sql.SQL) -> None:
        self.round_trips += 1
        self.conn.execute(query)

    def _lost(self) -> bool:
        return bool(self.conn.broken or self.conn.closed)

    def _run_batch(self, batch: Sequence[Step]) -> list[FailedChange]:
        body = merged_statements(batch)
        if not body:
            return []
        try:
            # The savepoint goes first on its own: a statement PostgreSQL rejects while
            # parsing (CREATE ROLE "public") fails the whole query string before any
            # of it runs, which would leave no savepoint to roll back to.
            self._execute(_SAVEPOINT)
            self._execute(sql.SQL("; ").join([*body, _RELEASE]))
        except psycopg.Error as exc:
            if self._lost():
                raise lost_connection(batch, exc) from exc
            return self._isolate(batch)
        self.statements += len(body)
        return []

    def _isolate(self, batch: Sequence[Step]) -> list[FailedChange]:
        """Undo the failed batch, then apply its steps one by one, each under a
        savepoint; the steps the server refuses are rolled back and returned."""
        failed: list[FailedChange] = []
        try:
            self._execute(sql.SQL("; ").join([_ROLLBACK_TO, _RELEASE]))
            for step in batch:
                if not step.statements:
                    continue
                if step.change.role in self.uncreated:
                    failed.append(_skipped(step.change))
                    continue
                try:
                    self._execute(_SAVEPOINT)
                    self._execute(sql.SQL("; ").join([*step.statements, _RELEASE]))
                    self.statements += len(step.statements)
                except psycopg.Error as exc:
                    if self._lost():
                        raise
                    self._execute(sql.SQL("; ").join([_ROLLBACK_TO, _RELEASE]))
                    failed.append(FailedChange(step.change, pg_message(exc)))
                    if step.change.kind is ChangeKind.CREATE_ROLE:
                        self.uncreated.add(step.change.role)
        except psycopg.Error as exc:
            if self._lost():
                raise lost_connection(batch, exc) from exc
            raise ChangeFailed(f"isolating a failed change: {pg_message(exc)}", None) from exc
        return failed


def _skipped(change: Change) -> FailedChange:
    return FailedChange(change, f"skipped: creating role {change.role} failed in this run")


def lost_connection(batch: Sequence[Step], exc: BaseException) -> ChangeFailed:
    first = batch[0].change.describe() if batch else "(none)"
    return ChangeFailed(
        f"connection lost while applying a batch of {len(batch)} changes starting with "
        f"change {first}; the server rolled the transaction back: {pg_message(exc)}",
        batch[0].change if len(batch) == 1 else None,
    )
