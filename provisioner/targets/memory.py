"""The in-memory target: the :class:`~provisioner.targets.base.Target` contract with no server.

Like an HTTP client's mock transport, it is part of the package so that the contract has
a third implementation that is *checked*: the conformance suite (tests/conformance) runs
the same sequences against it, PostgreSQL and MariaDB and expects the same inspected
state and the same plans.  Its catalog is plain values; each change runs as the short
list of statements the real adapter sends, in the same order, with the semantics its
capabilities declare:

* ``transactional`` (PostgreSQL): an apply works on a copy and commits it at the end; a
  change the "server" refuses is rolled back alone (the adapter's savepoint), later
  changes of a role whose CREATE was refused are skipped; a lost connection discards
  everything.  ``TERMINATE_SESSIONS`` acts at once, like ``pg_terminate_backend``.
* not transactional (MariaDB): every statement commits at once, in the MariaDB adapter's
  order (marker row before ``CREATE``, ledger row before ``GRANT`` and after ``REVOKE``,
  ``DROP`` before the marker row), so an interruption leaves the same prefix a real
  server would; marker rows without an account are removed when the next apply starts.

Faults between statements, for tests: :meth:`MemoryTarget.refuse` (the server refuses a
change with a message, at its account statement) and :meth:`MemoryTarget.crash_after`
(the connection is lost once that many statements ran).  What a DBA does by hand is
there too (:meth:`create_role`, :meth:`grant`, :meth:`open_sessions`, :meth:`set_password`).
A ``type = "memory"`` target in a configuration starts empty in every run; a test passes
its own instance to :class:`provisioner.engine.connections.Targets`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from provisioner.config import MemoryTargetConfig
from provisioner.core.values.capabilities import MARIADB, POSTGRESQL, Capabilities
from provisioner.core.values.model import ActualRole, ActualState, RoleKind
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.targets.base import ApplyResult, ChangeFailed, FailedChange, RoleRows
from provisioner.targets.memory_catalog import Catalog, Refused, Statements, has

FLAVORS: Mapping[str, Capabilities] = {
    "postgresql": POSTGRESQL,
    "mariadb": MARIADB,
}


class _Lost(Exception):
    """The connection was lost (:meth:`MemoryTarget.crash_after`, :meth:`~MemoryTarget.lose_connection`)."""


class MemoryTarget:
    """One catalog in this process (see the module docstring)."""

    def __init__(
        self,
        name: str = "memory",
        *,
        capabilities: Capabilities = POSTGRESQL,
        session_role: str = "provisioner",
        roles: Iterable[ActualRole] = (),
        read_default_roles: bool = False,
    ) -> None:
        self.name = name
        self.capabilities = capabilities
        self.session_role = session_role
        self.read_default_roles = read_default_roles and capabilities.default_roles
        self.statements_executed = 0
        self.server_version = "memory"
        self.sessions: dict[str, int] = {}
        """Open sessions per role (a test opens them; TERMINATE_SESSIONS ends them)."""
        self._statements = Statements(capabilities.dialect != "postgresql", session_role, self.sessions)
        self._catalog = Catalog()
        for role in roles:
            self._put(self._catalog, role)
        if session_role not in self._catalog.roles:
            self._catalog.roles[session_role] = ActualRole(session_role, True, createrole=True)
        self.drifted: set[str] = set()
        self._refusals: list[Callable[[Change], str | None]] = []
        self._crash_after: int | None = None
        self._lost = False
        self._transactions = itertools.count(1)
        self._committed: dict[str, bool] = {}

    @classmethod
    def from_config(cls, cfg: MemoryTargetConfig) -> MemoryTarget:
        """An empty catalog with the capabilities of ``cfg.flavor``."""
        return cls(cfg.name, capabilities=FLAVORS[cfg.flavor], session_role=cfg.session_role,
                   read_default_roles=cfg.manage_default_role)

    @classmethod
    def from_state(cls, state: ActualState) -> MemoryTarget:
        """A target whose catalog is ``state`` (inspect() returns an equal state)."""
        target = cls(state.target, capabilities=state.capabilities, session_role=state.session_role,
                     roles=state.roles.values(), read_default_roles=state.default_roles is not None)
        if state.session_role not in state.roles:
            del target._catalog.roles[state.session_role]
        target._catalog.default_roles = dict(state.default_roles or {})
        target.sessions.update(state.sessions)
        target.server_version = state.server_version
        target.drifted = set(state.credential_drift)
        return target

    @property
    def _ordered(self) -> bool:
        """MariaDB's statement order (and its quirks) where not PostgreSQL."""
        return self.capabilities.dialect != "postgresql"

    # ----------------------------------------------------------------- by hand (a DBA, a test)

    @staticmethod
    def _put(catalog: Catalog, role: ActualRole) -> None:
        catalog.roles[role.name] = replace(role, marker=None)
        if role.marker is not None:
            catalog.markers[role.name] = role.marker

    def create_role(self, name: str, login: bool = False, **options: Any) -> None:
        """A role made by hand (no marker unless ``marker=`` is given)."""
        if name in self._catalog.roles:
            raise Refused(f'role "{name}" already exists')
        self._put(self._catalog, ActualRole(name, login, **options))

    def grant(self, member: str, group: str) -> None:
        self._catalog.role(group)
        role = self._catalog.role(member)
        self._catalog.roles[member] = replace(role, member_of=role.member_of | {group})

    def drop_role(self, name: str) -> None:
        self._statements.drop_role(self._catalog, name)

    def open_sessions(self, name: str, count: int = 1) -> None:
        self.sessions[name] = self.sessions.get(name, 0) + count

    def set_password(self, name: str) -> None:
        """A password set by hand: credential drift where ``capabilities.password_drift``."""
        self._catalog.role(name)
        self.drifted.add(name)

    def refuse(self, why: Callable[[Change], str | None]) -> None:
        """From now on, the server refuses a change for which ``why`` returns a message."""
        self._refusals.append(why)

    def lose_connection(self) -> None:
        """The session is killed now (a DBA, a crash): the next statement of the running
        apply fails as a lost connection."""
        self._lost = True

    def crash_after(self, statements: int) -> None:
        """The next apply loses its connection once ``statements`` statements ran."""
        self._crash_after = statements

    # ----------------------------------------------------------------- the contract

    def inspect(self, only: frozenset[str] | None = None, reuse: RoleRows | None = None) -> ActualState:
        """The whole catalog (``only`` and ``reuse`` are allowed to be ignored)."""
        cat = self._catalog
        roles: dict[str, ActualRole] = {}
        for name, role in cat.roles.items():
            marker = cat.markers.get(name)
            if marker is not None and (role.system or (self._ordered and role.superuser)):
                marker = None  # MariaDB: a privileged account is never read as managed
            until = role.valid_until if marker is not None or not self._ordered else None
            roles[name] = replace(role, marker=marker, valid_until=until)
        managed_logins = {n for n, r in roles.items() if r.marker is not None and r.marker.kind is RoleKind.USER}
        return ActualState(
            target=self.name,
            roles=roles,
            session_role=self.session_role,
            sessions={n: c for n, c in sorted(self.sessions.items()) if c > 0 and n != self.session_role},
            default_roles=dict(cat.default_roles) if self.read_default_roles else None,
            server_version=self.server_version,
            capabilities=self.capabilities,
            credential_drift=frozenset(self.drifted & managed_logins) if self.capabilities.password_drift
            else frozenset(),
        )

    def catalog_digest(self) -> str | None:
        if not self.capabilities.catalog_digest:
            return None
        state = self.inspect()
        rows = [state.roles[n].digest_row() for n in sorted(state.roles)]
        return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()

    def inspect_if_moved(
        self, digest: str | None, reuse: RoleRows | None = None
    ) -> tuple[str | None, ActualState | None]:
        now = self.catalog_digest()
        if now is not None and now == digest:
            return now, None
        return now, self.inspect(reuse=reuse)

    def committed(self, transaction: str) -> bool | None:
        return self._committed.get(transaction)

    def close(self) -> None:
        """Nothing to close: the catalog stays (a test reads it after the run)."""

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        if not changes:
            return ApplyResult((), 0)
        crash, self._crash_after = self._crash_after, None
        counter = _Counter(crash, self)
        failed: list[FailedChange] = []
        if self.capabilities.transactional:
            drops = [c for c in changes if c.kind is ChangeKind.DROP_ROLE]
            ordered = [c for c in changes if c.kind is not ChangeKind.DROP_ROLE] + drops
        else:
            sets_default = [c for c in changes if c.kind is ChangeKind.ALTER_ROLE and has(c, "default_role")]
            ordered = [c for c in changes if c not in sets_default] + sets_default
        try:
            if self.capabilities.transactional:
                return self._apply_transaction(ordered, counter, failed, on_change, on_begin)
            return self._apply_autocommit(ordered, counter, failed, on_change, on_begin)
        finally:
            self._lost = False  # the next apply connects afresh

    def _apply_transaction(
        self,
        changes: Sequence[Change],
        counter: _Counter,
        failed: list[FailedChange],
        on_change: Callable[[Change], None] | None,
        on_begin: Callable[[str | None], None] | None,
    ) -> ApplyResult:
        transaction = str(next(self._transactions))
        self._committed[transaction] = False
        if on_begin is not None:
            on_begin(transaction)
        work = self._catalog.copy()
        applied: list[Change] = []
        uncreated: set[str] = set()
        try:
            for change in changes:
                if change.role in uncreated:
                    failed.append(FailedChange(change, f"skipped: creating role {change.role} failed in this run"))
                    continue
                savepoint = work.copy()
                try:
                    self._run(work, change, counter)
                except Refused as exc:
                    work = savepoint
                    failed.append(FailedChange(change, str(exc)))
                    if change.kind is ChangeKind.CREATE_ROLE:
                        uncreated.add(change.role)
                    continue
                applied.append(change)
        except _Lost as exc:
            raise ChangeFailed(
                f"target {self.name}: connection lost; the server rolled the transaction back: {exc}", None
            ) from exc
        self._catalog = work
        self._committed[transaction] = True
        for change in applied:
            if on_change is not None:
                on_change(change)
        return ApplyResult(tuple(applied), counter.ran, tuple(failed))

    def _apply_autocommit(
        self,
        changes: Sequence[Change],
        counter: _Counter,
        failed: list[FailedChange],
        on_change: Callable[[Change], None] | None,
        on_begin: Callable[[str | None], None] | None,
    ) -> ApplyResult:
        if on_begin is not None:
            on_begin(None)
        cat = self._catalog
        for orphan in [n for n in cat.markers if n not in cat.roles]:  # an interrupted create or drop
            del cat.markers[orphan]
        applied: list[Change] = []
        uncreated: set[str] = set()
        for change in changes:
            if change.role in uncreated:
                failed.append(FailedChange(change, f"skipped: creating {change.role} failed in this run"))
                continue
            try:
                self._run(cat, change, counter)
            except Refused as exc:
                failed.append(FailedChange(change, str(exc)))
                if change.kind is ChangeKind.CREATE_ROLE:
                    uncreated.add(change.role)
                continue
            except _Lost as exc:
                raise ChangeFailed(
                    f"target {self.name}: change {change.describe(self.capabilities.dialect)} connection lost "
                    f"during: {exc}; {len(applied)} of {len(changes)} change(s) were applied and committed "
                    "before it; the next run re-inspects and converges",
                    change,
                    len(applied),
                ) from exc
            applied.append(change)
            if on_change is not None:
                on_change(change)
        return ApplyResult(tuple(applied), counter.ran, tuple(failed))

    # ----------------------------------------------------------------- statements

    def _run(self, cat: Catalog, change: Change, counter: _Counter) -> None:
        """The change's statements in the adapter's order; a refusal strikes at its
        account statement (the one marked ``main``), after any bookkeeping before it."""
        why = next((w for w in (r(change) for r in self._refusals) if w), None)
        for main, statement in self._statements.of(change):
            counter.tick()
            if main and why is not None:
                raise Refused(why)
            statement(cat)
            self.statements_executed += 1

class _Counter:
    """Statements run by one apply; raises :class:`_Lost` once past ``crash``."""

    def __init__(self, crash: int | None, target: MemoryTarget) -> None:
        self.crash = crash
        self.target = target
        self.ran = 0

    def tick(self) -> None:
        if self.target._lost:
            raise _Lost("the session was killed")
        if self.crash is not None and self.ran >= self.crash:
            raise _Lost(f"server closed the connection after {self.ran} statement(s)")
        self.ran += 1
