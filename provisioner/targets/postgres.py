"""The PostgreSQL target (psycopg 3).

``inspect()`` reads the role catalog in a constant number of queries inside one
REPEATABLE READ, READ ONLY transaction.  ``apply()`` executes the changes it
is given in one transaction, serialised against other appliers of the same
target by a transaction-scoped advisory lock, many statements per round trip,
isolating any change the server refuses (see :mod:`provisioner.targets.pg_apply`).
Every session has ``lock_timeout`` and ``statement_timeout`` set (target
configuration): a DBA's open transaction delays an apply by at most the lock
timeout, never indefinitely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import IsolationLevel

from provisioner.config import PostgresTargetConfig
from provisioner.core.privileges.access import ObjectAcl
from provisioner.core.values.capabilities import POSTGRESQL, Capabilities
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.errors import ConfigError, TargetUnavailable
from provisioner.logs import log
from provisioner.targets import pg_access, pg_drop, pg_inspect, pg_privileges
from provisioner.targets.base import ApplyResult, ChangeFailed, FailedChange, RoleRows, lock_key
from provisioner.targets.pg_apply import (
    DEFAULT_BATCH_SIZE,
    BatchRunner,
    Step,
    compose,
    compose_all,
    pg_message,
    transaction_id,
    with_grantors,
)
from provisioner.targets.pg_session import (
    APPLICATION_NAME,
    FIRST_VERSION_WITH_CREATEROLE_LIMITS,
    KEEPALIVES,
    SESSION_SETTINGS,
    describe_endpoint,
    embedded_dsn,
    session_timeouts,
)


class PostgresTarget:
    """One PostgreSQL cluster, reached through one connection."""

    capabilities: Capabilities = POSTGRESQL

    def __init__(self, config: PostgresTargetConfig, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.config = config
        self.name = config.name
        self.batch_size = batch_size
        self.statements_executed = 0
        """Statements sent to the server by inspect() and apply(), ever."""
        self.round_trips = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._others: dict[str, psycopg.Connection[Any]] = {}
        """Connections to the other configured databases (privileges)."""
        self._dsn: str | None = None
        self._warned = False

    # ----------------------------------------------------------------- connection

    def _resolve_dsn(self) -> str:
        if self._dsn is None:
            if self.config.embedded:
                self._dsn = embedded_dsn(self.config.data_dir)
            else:
                self._dsn = self.config.dsn or ""
        return self._dsn

    def _connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        dsn = self._resolve_dsn()
        kwargs: dict[str, Any] = {
            "connect_timeout": self.config.connect_timeout,
            "application_name": APPLICATION_NAME,
            "autocommit": True,
            **KEEPALIVES,
        }
        if self.config.password is not None:
            kwargs["password"] = self.config.password.resolve()
        if dbname is not None:
            kwargs["dbname"] = dbname
        try:
            conn = psycopg.connect(dsn, **kwargs)
            conn.execute(SESSION_SETTINGS, session_timeouts(self.config.lock_timeout, self.config.statement_timeout))
        except psycopg.OperationalError as exc:
            raise TargetUnavailable(
                f"target {self.name}: cannot connect to PostgreSQL at {describe_endpoint(dsn)}: "
                f"{pg_message(exc)}"
            ) from exc
        try:
            self._check_login(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_login(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse a superuser login unless ``allow_superuser``; warn once about CREATEROLE
        before PostgreSQL 16.  Both facts come with the connection (no query)."""
        user = conn.info.parameter_status("session_authorization") or conn.info.user
        if conn.info.parameter_status("is_superuser") == "on":
            if not self.config.allow_superuser:
                raise ConfigError(
                    f"target {self.name}: logged in to {describe_endpoint(conn.info.dsn)} as {user!r}, a superuser; "
                    "refused: log in as the least-privilege role of deploy/least-privilege-postgresql.sql, or set "
                    "allow_superuser = true on this target"
                )
            if not self._warned:
                log.info("superuser_login_allowed", target=self.name, user=user, note="allow_superuser = true")
        elif conn.info.server_version < FIRST_VERSION_WITH_CREATEROLE_LIMITS and not self._warned:
            log.warning(
                "createrole_escalation_risk",
                target=self.name,
                user=user,
                server_version=conn.info.server_version,
                risk="before PostgreSQL 16 a CREATEROLE role can grant itself pg_execute_server_program "
                "and run programs as the server's operating-system user",
                mitigation="upgrade to PostgreSQL 16+; until then see docs/deployment.md "
                "(log_statement = 'ddl' for this role, pg_hba restricted to the daemon host, alert on "
                "GRANT of pg_execute_server_program / pg_read_server_files / pg_write_server_files)",
            )
        self._warned = True

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection, reconnecting if it was closed or broken."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._discard()
            self._conn = self._connect()
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._discard()
        for other in self._others.values():
            other.close()
        self._others.clear()

    def database_connection(self, dbname: str) -> psycopg.Connection[Any]:
        """An open connection to another database of this cluster (privileges)."""
        conn = self._others.get(dbname)
        if conn is None or conn.closed or conn.broken:
            conn = self._others[dbname] = self._connect(dbname)
        return conn

    def _query_in(self, dbname: str) -> pg_privileges.Query:
        """Queries on another database, in one REPEATABLE READ, READ ONLY
        transaction opened by the first one and ended by :meth:`_end_others`."""
        conn = self.database_connection(dbname)
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._query(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return lambda q, p: self._query(conn, q, p)

    def _end_others(self) -> None:
        for conn in self._others.values():
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()

    def backend_pid(self) -> int:
        """The server process id of this target's session (for diagnostics)."""
        return int(self.connection().info.backend_pid)

    # ----------------------------------------------------------------- inspect

    def _query(self, conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[Any]:
        """Every row of ``query`` (a statement without rows gives none)."""
        self.statements_executed += 1
        self.round_trips += 1
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description is not None else []

    def _rows(self, conn: psycopg.Connection[Any], query: str, params: Any = None) -> Iterator[Any]:
        """The rows of ``query`` (a query that returns rows), made into Python tuples a chunk at a
        time as they are consumed.  With libpq 17+ the server's rows also arrive a chunk at a
        time (chunked rows mode): a result of 100,000s of role or membership rows is never held
        whole, in libpq's buffer or as one list beside the roles built from them (issue 19, peak
        memory).  Such a query is sent when its rows are first asked for; the inspect consumes
        each result before the next one, as a connection requires.  Without chunked mode the
        result is buffered by libpq and converted a chunk at a time (row by row cost 1.3 us a
        row)."""
        self.statements_executed += 1
        self.round_trips += 1
        if psycopg.capabilities.has_stream_chunked():
            return conn.cursor().stream(query, params, size=_CHUNK)
        cur = conn.execute(query, params)
        if cur.description is None:
            return iter(())
        return _chunked(cur)

    def inspect(self, only: frozenset[str] | None = None, reuse: RoleRows | None = None) -> ActualState:
        """``only``: read just these roles and their memberships (no privileges): what
        verify needs after an apply; ``reuse``: see :class:`~provisioner.targets.base.Target`
        (with ``only``: the named roles' entries are refreshed from this read)."""
        _, state = self._inspect(only, reuse, None)
        assert state is not None  # no digest to compare: always read
        return state

    def inspect_if_moved(
        self, digest: str | None, reuse: RoleRows | None = None
    ) -> tuple[str | None, ActualState | None]:
        """One snapshot: the catalog digest (:meth:`catalog_digest`'s) and, unless it is ``digest``,
        the incremental inspect -- which then reads exactly the catalog the digest describes."""
        return self._inspect(None, reuse, digest, digesting=True)

    def _inspect(
        self, only: frozenset[str] | None, reuse: RoleRows | None, digest: str | None, digesting: bool = False
    ) -> tuple[str | None, ActualState | None]:
        conn = self.connection()
        try:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                ((session_role, version),) = self._query(conn, pg_inspect.SESSION_QUERY)
                query = lambda q, p: self._query(conn, q, p)  # noqa: E731
                rows = lambda q, p: self._rows(conn, q, p)  # noqa: E731
                now = None
                if digesting:
                    now = self._with_privileges(conn, pg_inspect.catalog_digest(rows))
                    if now == digest:
                        return now, None
                roles = pg_inspect.read_roles(rows, only, reuse)
                session_rows = self._query(conn, pg_inspect.SESSIONS_QUERY)
                privileges = None
                if self.config.manage_privileges and only is None:
                    privileges = pg_privileges.read_privileges(
                        roles,
                        str(conn.info.dbname),
                        self.config.databases,
                        query,
                        self._query_in,
                    )
        except psycopg.OperationalError as exc:
            self._discard()
            raise TargetUnavailable(f"target {self.name}: inspect failed: {pg_message(exc)}") from exc
        finally:
            self._reset_characteristics()
            self._end_others()
        return now, ActualState(
            target=self.name,
            roles=roles,
            privileges=privileges,
            session_role=str(session_role),
            server_version=str(version),
            sessions={str(name): int(n) for name, n in session_rows},
        )

    def _with_privileges(self, conn: psycopg.Connection[Any], roles_digest: str) -> str:
        """The role catalog's digest, and with managed privileges each database's too."""
        if not self.config.manage_privileges:
            return roles_digest
        query = lambda q, p: self._query(conn, q, p)  # noqa: E731
        home = str(conn.info.dbname)
        return roles_digest + "/" + pg_privileges.privileges_digest(home, self.config.databases, query, self._query_in)

    def object_access(self, text: str, database: str | None = None) -> list[ObjectAcl]:
        """The complete ACL of the object ``text`` names (``provisioner access``), read
        in ``database`` (default: the first of ``databases``, else the connected one)."""
        home = self.connection()
        dbname = database or (self.config.databases[0] if self.config.databases else str(home.info.dbname))
        conn = home if dbname == str(home.info.dbname) else self.database_connection(dbname)
        try:
            with conn.transaction():
                return pg_access.read_object_acl(lambda q, p: self._query(conn, q, p), text, dbname)
        except psycopg.OperationalError as exc:
            self._discard()
            raise TargetUnavailable(
                f"target {self.name}: reading the ACL of {text!r} failed: {pg_message(exc)}"
            ) from exc

    def catalog_digest(self) -> str:
        """One server-side digest of the cluster's role catalog (``pg_inspect.CATALOG_DIGEST_QUERY``)
        and, when privileges are managed, of each database's privileges and objects (the daemon's
        short-circuit)."""
        conn = self.connection()
        try:
            with conn.transaction():
                digest = self._with_privileges(conn, pg_inspect.catalog_digest(lambda q, p: self._rows(conn, q, p)))
        except psycopg.OperationalError as exc:
            self._discard()
            raise TargetUnavailable(f"target {self.name}: catalog digest failed: {pg_message(exc)}") from exc
        finally:
            self._end_others()
        return digest

    def _reset_characteristics(self) -> None:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            self._conn.isolation_level = None
            self._conn.read_only = None

    # ----------------------------------------------------------------- apply

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        if not changes:
            return ApplyResult((), 0)
        drops = [c for c in changes if c.kind is ChangeKind.DROP_ROLE]
        steps, failed = compose_all([c for c in changes if c.kind is not ChangeKind.DROP_ROLE])
        conn = self.connection()
        here = str(conn.info.dbname)
        elsewhere = [s for s in steps if pg_privileges.database_of(s.change, here)]
        steps = [s for s in steps if not pg_privileges.database_of(s.change, here)]
        runner = BatchRunner(conn, self.batch_size)
        try:
            for change in drops:  # a dropped role's objects in the other databases first, see pg_drop
                runner.statements += pg_drop.hand_over_elsewhere(conn, self._connect, change, self.config.databases)
            with conn.transaction():
                self._lock(conn, runner)
                if on_begin is not None:
                    on_begin(transaction_id(conn, runner))
                failed += runner.run(with_grantors(conn, runner, steps))
                for change in drops:
                    heir = change.param("reassign_to")
                    try:
                        runner.statements += pg_drop.hand_over(conn, change.role, heir, drop=True)
                    except psycopg.Error as exc:
                        if conn.broken or conn.closed:
                            raise
                        raise ChangeFailed(pg_drop.drop_error(change.role, here, exc), change) from exc
        except ChangeFailed:
            self._after_failure(runner)
            raise
        except psycopg.Error as exc:
            lost = conn.broken or conn.closed
            self._after_failure(runner)
            what = "connection lost; the server rolled the transaction back" if lost else "apply failed"
            raise ChangeFailed(f"target {self.name}: {what}: {pg_message(exc)}", None) from exc
        self._count(runner)
        refused = {id(f.change) for f in failed}
        applied = [c for c in (*(step.change for step in steps), *drops) if id(c) not in refused]
        if on_change is not None:
            for change in applied:
                on_change(change)
        self._terminate_again([c for c in changes if id(c) not in refused])
        more, more_failed, statements = self._apply_elsewhere(elsewhere, here, on_change)
        return ApplyResult((*applied, *more), runner.statements + statements, (*failed, *more_failed))

    def _apply_elsewhere(
        self, steps: Sequence[Step], here: str, on_change: Callable[[Change], None] | None
    ) -> tuple[tuple[Change, ...], tuple[FailedChange, ...], int]:
        """Privilege changes of the other databases, one transaction each, after
        the connected database committed (new roles must exist first).  A refused
        change is isolated like in the main transaction; a lost connection leaves
        earlier databases committed and the next plan shows what is left."""
        by_db: dict[str, list[Step]] = {}
        for step in steps:
            by_db.setdefault(pg_privileges.database_of(step.change, here) or here, []).append(step)
        total = 0
        applied: list[Change] = []
        failed: list[FailedChange] = []
        for db in sorted(by_db):
            runner = BatchRunner(self.database_connection(db), self.batch_size)
            try:
                with runner.conn.transaction():
                    self._lock(runner.conn, runner)
                    refused = runner.run(by_db[db])
            except (psycopg.Error, ChangeFailed) as exc:
                self._count(runner)
                change = exc.change if isinstance(exc, ChangeFailed) else None
                raise ChangeFailed(
                    f"target {self.name}: database {db}: {pg_message(exc)} (earlier databases are committed; "
                    "the next plan shows what is left)",
                    change,
                ) from exc
            self._count(runner)
            total += runner.statements
            failed += [FailedChange(f.change, f"database {db}: {f.error}") for f in refused]
            skip = {id(f.change) for f in refused}
            for step in by_db[db]:
                if id(step.change) in skip:
                    continue
                applied.append(step.change)
                if on_change is not None:
                    on_change(step.change)
        return tuple(applied), tuple(failed), total

    def _terminate_again(self, changes: Sequence[Change]) -> None:
        """pg_terminate_backend acts at once, before COMMIT makes the NOLOGIN
        visible: a session reconnecting in between is ended here, after COMMIT
        (best effort; verify reports any session still open).  All of them in one pipeline:
        one round trip, not one per leaver."""
        steps = [compose(c) for c in changes if c.kind is ChangeKind.TERMINATE_SESSIONS]
        if not steps:
            return
        try:
            conn = self.connection()
            with conn.pipeline():
                for step in steps:
                    for statement in step.statements:
                        conn.execute(statement.as_bytes(conn))
        except (psycopg.Error, TargetUnavailable):
            self._discard()

    def committed(self, transaction: str) -> bool | None:
        """``pg_xact_status``: True committed, False aborted (or never finished: a
        killed session's transaction), None when too old for the server to tell."""
        if not transaction:
            return None
        try:
            with self.connection().transaction():
                row = self.connection().execute(
                    "SELECT pg_catalog.pg_xact_status(%s::xid8)", (transaction,)
                ).fetchone()
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._discard()
            return None
        status = row[0] if row else None
        if status is None:
            return None
        return str(status) == "committed"

    def _lock(self, conn: psycopg.Connection[Any], runner: BatchRunner) -> None:
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (lock_key("apply", self.name),))
        runner.statements += 1
        runner.round_trips += 1

    def _after_failure(self, runner: BatchRunner) -> None:
        self._count(runner)
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._discard()

    def _count(self, runner: BatchRunner) -> None:
        self.statements_executed += runner.statements
        self.round_trips += runner.round_trips


_CHUNK = 2000
"""Rows converted (and, streamed, received) at a time."""


def _chunked(cur: psycopg.Cursor[Any], size: int = _CHUNK) -> Iterator[Any]:
    while rows := cur.fetchmany(size):
        yield from rows
