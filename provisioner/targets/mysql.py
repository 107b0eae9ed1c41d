"""The MariaDB (10.4+) and MySQL 8 target (PyMySQL).

``inspect()`` reads accounts, role grants, ownership markers and open sessions
in five queries, whatever the number of accounts.  ``apply()`` cannot be
transactional: every account statement commits at once.  Changes run one
after another, each ordered so that any prefix is safe (see
:mod:`provisioner.targets.mysql_apply`), serialised against other appliers of
the same target by a named lock (``GET_LOCK``); ``on_change`` is called after
each change, when it is committed.  A change the server refuses is skipped and
returned in ``ApplyResult.failed`` with the server's message while the others
still apply; a lost connection or lock raises
:class:`~provisioner.targets.base.ChangeFailed` naming the change and
how many were applied before it; the next run re-inspects and converges.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pymysql

from provisioner.config import MysqlTargetConfig
from provisioner.core.privileges.access import ObjectAcl
from provisioner.core.values.capabilities import MARIADB, MYSQL, Capabilities
from provisioner.core.values.grants import PrivilegeSnapshot
from provisioner.core.values.model import ActualRole, ActualState
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.errors import ConfigError, TargetUnavailable
from provisioner.targets import mysql_inspect as mi
from provisioner.targets import mysql_privileges as mp
from provisioner.targets.base import ApplyResult, ChangeFailed, FailedChange, RoleRows, lock_name
from provisioner.targets.mysql_apply import (
    STEPS,
    Executor,
    Settings,
    check,
    mysql_message,
    quote_ident,
)

LOCK_TIMEOUT_SECONDS = 30
ALL_STEPS = {**STEPS, **mp.PRIVILEGE_STEPS}
UNMANAGED_WHY_NOT = (
    "manage_privileges = false on this target; set it to true to apply them here (a PostgreSQL schema is a "
    "MariaDB database; docs/mysql.md, \"Object privileges\"), or grant object privileges to these roles by hand "
    "(provisioner manages their role hierarchy and memberships)"
)
_PLUGIN = re.compile(r"^[A-Za-z0-9_]+$")


def _sets_default(change: Change) -> bool:
    return change.kind is ChangeKind.ALTER_ROLE and any(key == "default_role" for key, _ in change.params)


def _is_superuser(conn: pymysql.connections.Connection[Any]) -> bool:
    """Whether the session's account holds SUPER, ALL PRIVILEGES or GRANT OPTION on ``*.*``."""
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = [str(row[0]).upper() for row in cur.fetchall()]
    for grant in grants:
        if not grant.startswith("GRANT ") or " ON *.* " not in grant:
            continue
        privileges = {p.strip() for p in grant.removeprefix("GRANT ").split(" ON *.* ", 1)[0].split(",")}
        if privileges & {"ALL PRIVILEGES", "SUPER"} or "WITH GRANT OPTION" in grant:
            return True
    return False


class MysqlTarget:
    """One MariaDB / MySQL server, reached through one autocommit connection."""

    def __init__(self, config: MysqlTargetConfig) -> None:
        if not _PLUGIN.match(config.auth_plugin):
            raise ConfigError(f"target {config.name}: auth_plugin {config.auth_plugin!r} is not a plugin name")
        self.config = config
        self.name = config.name
        self.statements_executed = 0
        """Statements sent to the server by inspect() and apply(), ever."""
        self._conn: pymysql.connections.Connection[Any] | None = None
        self._names: mi.Names | None = None
        self._mariadb = True

    @property
    def capabilities(self) -> Capabilities:
        """MariaDB's until an inspect saw a MySQL server; object privileges only with
        ``manage_privileges``."""
        return self._capabilities()

    # ----------------------------------------------------------------- connection

    def _connect(self) -> pymysql.connections.Connection[Any]:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "host": cfg.host,
            "port": cfg.port,
            "user": cfg.user,
            "password": cfg.password.resolve() if cfg.password is not None else "",
            "connect_timeout": cfg.connect_timeout,
            "autocommit": True,
            "charset": "utf8mb4",
            "program_name": "provisioner",
        }
        if cfg.database:
            kwargs["database"] = cfg.database
        if cfg.unix_socket:
            kwargs["unix_socket"] = cfg.unix_socket
        lock = max(1, round(cfg.lock_timeout))
        kwargs["init_command"] = f"SET SESSION lock_wait_timeout = {lock}, innodb_lock_wait_timeout = {lock}"
        try:
            conn = pymysql.connect(**kwargs)
            if "mariadb" in conn.get_server_info().lower():  # MySQL's max_execution_time covers SELECT only
                with conn.cursor() as cur:
                    cur.execute("SET SESSION max_statement_time = %s", (float(cfg.statement_timeout),))
            superuser = _is_superuser(conn)
        except pymysql.err.MySQLError as exc:
            raise TargetUnavailable(
                f"target {self.name}: cannot connect to MySQL/MariaDB at host={cfg.host} port={cfg.port} "
                f"user={cfg.user}: {mysql_message(exc)}"
            ) from exc
        if superuser and not cfg.allow_superuser:
            with contextlib.suppress(pymysql.err.Error):
                conn.close()
            raise ConfigError(
                f"target {self.name}: logged in to host={cfg.host} port={cfg.port} as {cfg.user!r}, which holds "
                "SUPER, ALL PRIVILEGES or a global GRANT OPTION; refused: log in as the account of "
                "deploy/least-privilege-mysql.sql, or set allow_superuser = true on this target"
            )
        return conn

    def connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None or not self._conn.open:
            self._conn = self._connect()
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.err.Error):
                self._conn.close()
            self._conn = None

    def catalog_digest(self) -> str | None:
        """MariaDB / MySQL have no cheap catalog digest: the short-circuit never applies."""
        return None

    def inspect_if_moved(
        self, digest: str | None, reuse: RoleRows | None = None
    ) -> tuple[str | None, ActualState | None]:
        """No digest: always the whole inspect."""
        return None, self.inspect(reuse=reuse)

    def close(self) -> None:
        self._discard()

    def thread_id(self) -> int:
        """The server thread id of this target's session (diagnostics, tests)."""
        return int(self.connection().thread_id())

    # ----------------------------------------------------------------- inspect

    def _query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.statements_executed += 1
        with self.connection().cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    @property
    def _meta_table(self) -> str:
        return f"{quote_ident(self.config.meta_database)}.{quote_ident('managed_roles')}"

    @property
    def _ledger_table(self) -> str:
        return f"{quote_ident(self.config.meta_database)}.{quote_ident('managed_ledger')}"

    def inspect(self, only: frozenset[str] | None = None, reuse: RoleRows | None = None) -> ActualState:
        """Always the whole catalog (``only`` and ``reuse`` are accepted and ignored: accounts are few)."""
        try:
            ((version, current),) = self._query(mi.SESSION_QUERY)
            self._mariadb = mi.is_mariadb(str(version))
            if self._mariadb:
                accounts = mi.accounts(self._query(mi.MARIADB_ACCOUNTS_QUERY))
                grants = self._query(mi.MARIADB_GRANTS_QUERY)
            else:
                accounts = mi.accounts(self._query(mi.MYSQL_ACCOUNTS_QUERY))
                grants = self._query(mi.MYSQL_GRANTS_QUERY)
            try:
                try:
                    markers = self._query(mi.markers_query(self._meta_table, self._ledger_table))
                except pymysql.err.ProgrammingError as exc:
                    # the ledger table alone missing: a meta database of an older version
                    if exc.args[0] not in mi.NO_SUCH_TABLE or "managed_ledger" not in str(exc.args[-1]):
                        raise
                    markers = self._query(mi.markers_query(self._meta_table))
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] not in mi.NO_SUCH_TABLE:
                    raise
                markers = []
            session_rows = self._query(mi.SESSIONS_QUERY)
            defaults = self._query(mi.MARIADB_DEFAULT_ROLES_QUERY) if self._reads_default_roles else None
        except pymysql.err.OperationalError as exc:
            self._discard()
            raise TargetUnavailable(f"target {self.name}: inspect failed: {mysql_message(exc)}") from exc
        except pymysql.err.MySQLError as exc:
            raise TargetUnavailable(
                f"target {self.name}: inspect failed: {mysql_message(exc)} (does the provisioner's account "
                "hold SELECT on mysql.global_priv and mysql.roles_mapping? see docs/mysql.md)"
            ) from exc
        roles, names = mi.build_roles(accounts, grants, markers, self.config.account_host)
        self._names = names
        privileges = self._privileges(roles, names, accounts) if self._reads_privileges else None
        me_user, me_host = mi.session_account(str(current))
        managed = {n for n, r in roles.items() if r.marker is not None}
        drift = (
            mi.credential_drift(accounts, names, self.config.auth_plugin, self.config.auth_string) & managed
            if self._mariadb
            else frozenset()
        )
        return ActualState(
            target=self.name,
            roles=roles,
            privileges=privileges,
            session_role=names.name(me_user, me_host),
            capabilities=self.capabilities,
            credential_drift=frozenset(drift),
            server_version=str(version),
            sessions=dict(mi.sessions(session_rows)),
            default_roles=mi.default_roles(defaults, names) if defaults is not None else None,
        )

    def _capabilities(self) -> Capabilities:
        """MariaDB can express the catalog's object privileges (translated); this target
        manages them only with ``manage_privileges`` (otherwise one info notice says so)."""
        if not self._mariadb:
            return MYSQL
        if self.config.manage_privileges:
            return MARIADB
        return replace(MARIADB, object_privileges=False, object_privileges_why_not=UNMANAGED_WHY_NOT)

    @property
    def _reads_privileges(self) -> bool:
        """Object privileges are read on MariaDB with ``manage_privileges`` only."""
        return self.config.manage_privileges and self._mariadb

    def _privileges(
        self, roles: dict[str, ActualRole], names: mi.Names, accounts: list[mi.Account], everyone: bool = False
    ) -> PrivilegeSnapshot:
        try:
            return mp.read_privileges(self._query, roles, names, accounts, self.config.meta_database, everyone)
        except pymysql.err.OperationalError as exc:
            self._discard()
            raise TargetUnavailable(f"target {self.name}: reading privileges failed: {mysql_message(exc)}") from exc
        except pymysql.err.MySQLError as exc:
            raise TargetUnavailable(
                f"target {self.name}: reading privileges failed: {mysql_message(exc)} (manage_privileges = true "
                "needs SELECT on mysql.db, mysql.tables_priv, mysql.columns_priv and mysql.procs_priv; see "
                "docs/mysql.md)"
            ) from exc

    def object_access(self, text: str, database: str | None = None) -> list[ObjectAcl]:
        """The complete ACL of the object ``text`` names (``db.table``, ``db.routine`` or ``db``)
        for ``provisioner access``: every account's and role's grants (``database`` is unused:
        a PostgreSQL schema is a MariaDB database)."""
        if not self._mariadb:
            return []
        accounts = mi.accounts(self._query(mi.MARIADB_ACCOUNTS_QUERY))
        roles, names = mi.build_roles(accounts, self._query(mi.MARIADB_GRANTS_QUERY), [], self.config.account_host)
        return mp.object_acls(self._privileges(roles, names, accounts, everyone=True), text)

    @property
    def _reads_default_roles(self) -> bool:
        """Default roles are planned on MariaDB with ``manage_default_role`` only."""
        return self.config.manage_default_role and self._mariadb

    # ----------------------------------------------------------------- apply

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        if not changes:
            return ApplyResult((), 0)
        failed: list[FailedChange] = []
        expressible = []
        for change in changes:  # refuse what cannot be expressed before anything runs
            try:
                check(change, ALL_STEPS, mp.check_privilege)
                expressible.append(change)
            except ChangeFailed as exc:
                failed.append(FailedChange(change, str(exc)))
        changes = expressible
        if self._names is None:
            self.inspect()
        assert self._names is not None
        settings = Settings(self.config.meta_database, self.config.auth_plugin, self.config.auth_string, self._mariadb)
        ex = Executor(self.connection(), self._names, settings)
        applied: list[Change] = []
        # SET DEFAULT ROLE needs the role granted: default-role changes run after every other
        changes = [c for c in changes if not _sets_default(c)] + [c for c in changes if _sets_default(c)]
        try:
            self._lock(ex)
            if on_begin is not None:
                on_begin(None)  # each account statement commits on its own: no transaction to name
            try:
                ex.ensure_meta()
                ex.drop_orphan_markers()
                uncreated: set[str] = set()  # a failed CREATE: never grant to a namesake
                for change in changes:
                    if change.role in uncreated:
                        failed.append(FailedChange(change, f"skipped: creating {change.role} failed in this run"))
                        continue
                    try:
                        ALL_STEPS[change.kind](ex, change)
                    except (pymysql.err.MySQLError, ValueError, TypeError) as exc:
                        if isinstance(exc, pymysql.err.OperationalError) and not self.connection_open():
                            raise self._failed(change, len(applied), len(changes), exc) from exc
                        # refused by the server: this change alone is skipped, the others apply
                        failed.append(FailedChange(change, mysql_message(exc)))
                        if change.kind is ChangeKind.CREATE_ROLE:
                            uncreated.add(change.role)
                        continue
                    applied.append(change)
                    if on_change is not None:
                        on_change(change)
            finally:
                self._unlock(ex)
        except pymysql.err.MySQLError as exc:  # lock, meta table
            raise ChangeFailed(
                f"target {self.name}: apply failed before any change: {mysql_message(exc)}", None, 0
            ) from exc
        finally:
            self.statements_executed += ex.statements
            self._names = None  # names and accounts are re-read by the next inspect
            if self._conn is not None and not self._conn.open:
                self._discard()
        return ApplyResult(tuple(applied), ex.statements, tuple(failed))

    def _failed(self, change: Change, done: int, total: int, exc: BaseException) -> ChangeFailed:
        lost = isinstance(exc, pymysql.err.OperationalError) and not self.connection_open()
        what = "connection lost during" if lost else "failed:"
        return ChangeFailed(
            f"target {self.name}: change {change.describe()} {what} {mysql_message(exc)}; {done} of {total} "
            "change(s) were applied and committed before it (MySQL/MariaDB cannot roll back account "
            "statements); the next run re-inspects and converges",
            change,
            done,
        )

    def committed(self, transaction: str) -> bool | None:
        """Account statements commit one by one: recovery reads the catalog instead."""
        return None

    def connection_open(self) -> bool:
        return self._conn is not None and bool(self._conn.open)

    def _locks(self) -> tuple[str, str]:
        """The target's apply lock, then the meta database's: installations sharing a meta
        database must not sweep orphan marker rows while another writes a marker row before
        its ``CREATE USER`` (the sweep would unmark the account being created)."""
        return lock_name("apply", self.name), f"provisioner-meta:{self.config.meta_database}"[:64]

    def _lock(self, ex: Executor) -> None:
        held: list[str] = []
        for name in self._locks():
            ((got,),) = ex.run("SELECT GET_LOCK(%s, %s)", (name, LOCK_TIMEOUT_SECONDS))
            if got != 1:
                for taken in held:
                    ex.run("SELECT RELEASE_LOCK(%s)", (taken,))
                raise ChangeFailed(
                    f"target {self.name}: another apply holds the lock {name!r}; nothing changed",
                    None,
                    0,
                )
            held.append(name)

    def _unlock(self, ex: Executor) -> None:
        if self.connection_open():
            try:
                for name in reversed(self._locks()):
                    ex.run("SELECT RELEASE_LOCK(%s)", (name,))
            except pymysql.err.MySQLError:
                self._discard()
