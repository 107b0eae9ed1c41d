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
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Transformer

from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import Marker
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.targets.base import ChangeFailed, FailedChange, required
from provisioner.targets.pg_bulk import bulk_batches, by_group, merged_statements
from provisioner.targets.pg_inspect import GRANTORS_QUERY
from provisioner.targets.pg_privileges import privilege_statements
from provisioner.targets.pg_session import FIRST_VERSION_WITH_GRANTOR_ROWS
from provisioner.targets.pg_step import Names, Statement, comment, render
from provisioner.targets.pg_step import Step as Step

DEFAULT_BATCH_SIZE = 500

Grantors = Mapping[tuple[str, str], tuple[str, ...]]
"""(member, group) -> every grantor of that membership (PostgreSQL 16+)."""

_SAVEPOINT = sql.SQL("SAVEPOINT provisioner_batch")
_RELEASE = b"RELEASE SAVEPOINT provisioner_batch"
_ROLLBACK_TO_AND_RELEASE = b"ROLLBACK TO SAVEPOINT provisioner_batch; " + _RELEASE
_SEPARATOR = b"; "


# --------------------------------------------------------------------------- composing


def _ident(name: Any) -> str:
    """``name``, checked to be a role name (composed as an identifier by :class:`Statement`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a role name must be a non-empty string, got {name!r}")
    return name


def _marker(value: Any) -> Marker | None:
    """The marker given as JSON (``Marker.to_json``); ValueError/KeyError/TypeError when malformed."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"marker must be an object, got {type(value).__name__}")
    return Marker.from_json(value)


def marker_comment(value: Any) -> str | None:
    """The COMMENT text for a marker given as JSON (``Marker.to_json``)."""
    marker = _marker(value)
    return None if marker is None else marker_codec.encode(marker)


def _create(change: Change) -> tuple[sql.Composable, ...]:
    role = _ident(change.role)
    login = b" WITH LOGIN" if change.param("login") else b" WITH NOLOGIN"
    until = change.param("valid_until")
    create = (
        Statement(b"CREATE ROLE ", role, login)
        if until is None
        else Statement(b"CREATE ROLE ", role, login, b" VALID UNTIL ", sql.Literal(str(until)))
    )
    text = marker_comment(change.param("marker"))
    return (create,) if text is None else (create, comment(role, text))


def _alter(change: Change) -> tuple[sql.Composable, ...]:
    params = dict(change.params)
    parts: list[bytes | sql.Composable] = []
    if params.get("login") is not None:
        parts.append(b" LOGIN" if params["login"] else b" NOLOGIN")
    if "valid_until" in params:
        until = params["valid_until"]
        parts += [b" VALID UNTIL ", sql.Literal(str(until) if until else "infinity")]
    if not parts:
        return ()
    return (Statement(b"ALTER ROLE ", _ident(change.role), b" WITH", *parts),)


def _grant(change: Change) -> tuple[sql.Composable, ...]:
    return (Statement(b"GRANT ", _ident(required(change, "group")), b" TO ", _ident(change.role)),)


def _revoke(change: Change, grantors: Grantors | None) -> tuple[sql.Composable, ...]:
    group_name = required(change, "group")
    group, role = _ident(group_name), _ident(change.role)
    seen = (grantors or {}).get((change.role, group_name), ())
    if not seen:  # PostgreSQL <= 15, or nothing to revoke (the server warns)
        return (Statement(b"REVOKE ", group, b" FROM ", role),)
    return tuple(Statement(b"REVOKE ", group, b" FROM ", role, b" GRANTED BY ", _ident(grantor)) for grantor in seen)


def _set_marker(change: Change) -> tuple[sql.Composable, ...]:
    return (comment(_ident(change.role), marker_comment(change.param("marker"))),)


def _rename(change: Change) -> tuple[sql.Composable, ...]:
    old = _ident(required(change, "old_name"))
    return (Statement(b"ALTER ROLE ", old, b" RENAME TO ", _ident(change.role)),)


def _terminate(change: Change) -> tuple[sql.Composable, ...]:
    # Runs after the NOLOGIN of the same transaction and once more after COMMIT
    # (pg_terminate_backend is not transactional; see PostgresTarget.apply).
    # Waits up to 5 s for each backend to exit.  Without pg_signal_backend it
    # terminates nothing instead of aborting the disable; verify then reports
    # the sessions still open.
    query = Statement(
        b"SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity"
        b" WHERE usename = ",
        sql.Literal(change.role),
        b" AND pid <> pg_catalog.pg_backend_pid()"
        b" AND pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE')",
    )
    return (query,)


def _drop(change: Change) -> tuple[sql.Composable, ...]:
    role = _ident(change.role)
    heir = change.param("reassign_to")
    new_owner: bytes | str = b"CURRENT_USER" if heir is None else _ident(heir)
    return (
        Statement(b"REASSIGN OWNED BY ", role, b" TO ", new_owner),
        Statement(b"DROP OWNED BY ", role),
        Statement(b"DROP ROLE ", role),
    )


_COMPOSERS: dict[ChangeKind, Callable[[Change], tuple[sql.Composable, ...]]] = {
    ChangeKind.CREATE_ROLE: _create,
    ChangeKind.ALTER_ROLE: _alter,
    ChangeKind.SET_MARKER: _set_marker,
    ChangeKind.RENAME_ROLE: _rename,
    ChangeKind.TERMINATE_SESSIONS: _terminate,
    ChangeKind.DROP_ROLE: _drop,
    ChangeKind.GRANT_PRIVILEGE: privilege_statements,
    ChangeKind.REVOKE_PRIVILEGE: privilege_statements,
}


def compose(change: Change, grantors: Grantors | None = None) -> Step:
    """The statements for ``change``; :class:`ChangeFailed` if it cannot be
    expressed (unknown kind, malformed parameters).

    A membership change carries the member's marker with its updated ledger (the
    groups provisioner granted), written in the same transaction as the GRANT/REVOKE:
    checked here, composed only when sent (:attr:`Step.ledger`)."""
    try:
        kind = change.kind
        if kind is ChangeKind.GRANT_MEMBERSHIP:
            group = str(required(change, "group"))
            return Step(change, _grant(change), ("GRANT", group), _marker(change.param("marker")))
        if kind is ChangeKind.REVOKE_MEMBERSHIP:
            group = str(required(change, "group"))
            plain = not (grantors or {}).get((change.role, group))
            ledger = _marker(change.param("marker"))
            return Step(change, _revoke(change, grantors), ("REVOKE", group) if plain else None, ledger)
        composer = _COMPOSERS.get(kind)
        if composer is None:
            raise ValueError(f"change kind {kind.value!r} is not supported by this target")
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
        self._names: Names = {}
        """Each role name escaped once for this connection (this apply)."""
        self._context = Transformer.from_context(conn)
        """What psycopg renders a query in when it executes a Composable itself."""

    def run(self, steps: Sequence[Step]) -> list[FailedChange]:
        failed: list[FailedChange] = []
        for batch in batches(steps, self.batch_size):
            kept = [step for step in batch if step.change.role not in self.uncreated]
            failed += [_skipped(step.change) for step in batch if step.change.role in self.uncreated]
            failed += self._run_batch(kept)
        return failed

    def _execute(self, query: sql.SQL | bytes) -> None:
        self.round_trips += 1
        self.conn.execute(query)

    def _query(self, statements: Sequence[sql.Composable]) -> bytes:
        """``statements`` and the savepoint's RELEASE as one query: the bytes
        ``sql.SQL("; ").join([*statements, RELEASE])`` renders, each role name escaped once."""
        names, context = self._names, self._context
        return _SEPARATOR.join([*(render(s, names, context) for s in statements), _RELEASE])

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
            self._execute(self._query(body))
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
            self._execute(_ROLLBACK_TO_AND_RELEASE)
            for step in batch:
                if not step.size:
                    continue
                if step.change.role in self.uncreated:
                    failed.append(_skipped(step.change))
                    continue
                try:
                    statements = step.statements
                    self._execute(_SAVEPOINT)
                    self._execute(self._query(statements))
                    self.statements += len(statements)
                except psycopg.Error as exc:
                    if self._lost():
                        raise
                    self._execute(_ROLLBACK_TO_AND_RELEASE)
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


def compose_all(changes: Sequence[Change]) -> tuple[list[Step], list[FailedChange]]:
    """Statements per change; a change that cannot be expressed is refused alone."""
    steps: list[Step] = []
    failed: list[FailedChange] = []
    for change in changes:
        try:
            steps.append(compose(change))
        except ChangeFailed as exc:
            failed.append(FailedChange(change, str(exc)))
    return steps, failed


def transaction_id(conn: psycopg.Connection[Any], runner: BatchRunner) -> str:
    row = conn.execute("SELECT pg_catalog.pg_current_xact_id()::text").fetchone()
    runner.statements += 1
    runner.round_trips += 1
    return str(row[0]) if row else ""


def with_grantors(
    conn: psycopg.Connection[Any], runner: BatchRunner, steps: list[Step]
) -> list[Step]:
    """``steps`` with each REVOKE re-composed for every grantor seen."""
    grantors = _grantors(conn, runner, [step.change for step in steps])
    if not grantors:
        return steps
    return [
        compose(step.change, grantors) if step.change.kind is ChangeKind.REVOKE_MEMBERSHIP else step
        for step in steps
    ]


def _grantors(
    conn: psycopg.Connection[Any], runner: BatchRunner, changes: Sequence[Change]
) -> Grantors | None:
    """On PostgreSQL 16+, every grantor of each membership to revoke, so
    that each recorded grant is revoked (a plain REVOKE only removes the
    one granted by the current user)."""
    pairs = revoke_pairs(changes)
    if not pairs or conn.info.server_version < FIRST_VERSION_WITH_GRANTOR_ROWS:
        return None
    members, groups = [m for m, _ in pairs], [g for _, g in pairs]
    rows = conn.execute(GRANTORS_QUERY, (members, groups)).fetchall()
    runner.statements += 1
    runner.round_trips += 1
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for member, group, grantor in rows:
        out[(member, group)] = (*out.get((member, group), ()), grantor)
    return out
