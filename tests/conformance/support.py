"""The conformance harness: one sequence, any target.

A :class:`Backend` is one target under test -- the in-memory target with PostgreSQL's or
MariaDB's capabilities, PostgreSQL 15, MariaDB 10.11 -- reached through the whole engine
(``plan_run`` / ``apply_run``) from an LDIF directory and the same rules.  A real server
runs beside an in-memory *twin* declaring the same capabilities: every plan of the two
must be the same changes, and every inspected state the same once normalised
(:func:`normalise`), so the in-memory target is checked against each server at every step.

What a DBA does by hand (a namesake role, a grant, killing the provisioner's session) goes
through :class:`Backend` to the server and its twin alike; :class:`Interfering` does it
*during* an apply: at its start (``on_begin``, after the apply lock) or after the n-th
change.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from provisioner.config import Config, load_config
from provisioner.core.values.capabilities import Capabilities
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Change, Plan, TargetPlan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.installation import open_store
from provisioner.engine.run import apply_run, plan_run
from provisioner.targets.base import ApplyResult, RoleRows, Target
from provisioner.targets.factory import build_target
from provisioner.targets.memory import FLAVORS, MemoryTarget
from provisioner.targets.mysql import MysqlTarget
from provisioner.targets.postgres import PostgresTarget
from tests.mysql.support import HEADER, Person
from tests.support import mysql as M
from tests.support import pg
from tests.support.e2e import RELAXED_SAFETY

KINDS = ("memory-postgresql", "memory-mariadb", "postgresql", "mariadb")

RULES = """
[[rule]]
id = "traders"
description = "traders trade"
grant = ["{p}trader", "{p}reader"]
when = {{ attr = "department", equals = "Trading" }}

[[rule]]
id = "operations"
description = "operations settle"
grant = ["{p}ops", "{p}reader"]
when = {{ attr = "department", equals = "Operations" }}
"""

Normal = dict[str, tuple[Any, ...]]


def sid(uid: str) -> str:
    """The stable id tests.mysql.support.Person gives ``uid`` (a renamed person keeps it)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, uid))


def normalise(state: ActualState, prefix: str) -> Normal:
    """The prefix's roles (the provisioner's own account aside) in no target's words: login,
    memberships, marker (kind, stable id, source, installation), the ledger as the core reads
    it (``granted ∩ member_of``) and the leave instant."""
    out: Normal = {}
    for name, role in sorted(state.roles.items()):
        if not name.startswith(prefix) or name == f"{prefix}svc":
            continue
        m = role.marker
        marker = None if m is None else (m.kind.value, m.stable_id, m.source, m.instance)
        ledger = None if m is None or m.granted is None else frozenset(m.granted & role.member_of)
        out[name] = (role.login, frozenset(role.member_of), marker, ledger, role.valid_until)
    return out


def shape(c: Change) -> tuple[Any, ...]:
    """What a change does, in no target's words."""
    return (c.kind.value, c.role, c.param("group"), c.param("login"))


def shapes(tp: TargetPlan) -> list[tuple[Any, ...]]:
    return sorted(shape(c) for c in tp.changes)


def exact(tp: TargetPlan, prefix: str) -> tuple[list[Any], list[tuple[str, str | None]]]:
    """A target plan with nothing that names its target: every change whole, the codes of
    the notices about the prefix's roles (a shared server holds other tests' roles too)."""
    mine = sorted((n.code, n.role) for n in tp.notices if n.role is not None and n.role.startswith(prefix))
    return [c.to_json() for c in tp.changes], mine


class Interfering:
    """A target whose apply is interfered with: ``action`` runs once, at the start of the
    apply (``after == 0``: once the apply lock is held) or after the ``after``-th change."""

    def __init__(self, target: Target, action: Callable[[], None], after: int = 0) -> None:
        self.target, self._action, self.after = target, action, after
        self.name = target.name
        self.fired = False

    def action(self) -> None:
        if not self.fired:
            self.fired = True
            self._action()

    @property
    def capabilities(self) -> Capabilities:
        return self.target.capabilities

    def inspect(self, only: frozenset[str] | None = None, reuse: RoleRows | None = None) -> ActualState:
        return self.target.inspect(only, reuse)

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        done = [0]

        def begin(transaction: str | None) -> None:
            if on_begin is not None:
                on_begin(transaction)
            if self.after == 0:
                self.action()

        def change(c: Change) -> None:
            if on_change is not None:
                on_change(c)
            done[0] += 1
            if self.after and done[0] == self.after:
                self.action()

        return self.target.apply(changes, on_change=change, on_begin=begin)

    def catalog_digest(self) -> str | None:
        return self.target.catalog_digest()

    def inspect_if_moved(
        self, digest: str | None, reuse: RoleRows | None = None
    ) -> tuple[str | None, ActualState | None]:
        return self.target.inspect_if_moved(digest, reuse)

    def committed(self, transaction: str) -> bool | None:
        return self.target.committed(transaction)

    def close(self) -> None:
        self.target.close()


@dataclass
class Backend:
    kind: str
    prefix: str
    path: Path
    ldif: Path
    memory: dict[str, MemoryTarget] = field(default_factory=dict)
    """The in-memory targets of the configuration, kept between runs."""
    password: str = ""
    """MariaDB: the provisioner account's password (a DBA grants its roles as it)."""

    @property
    def name(self) -> str:
        return f"{self.prefix}sut"

    @property
    def twin(self) -> str | None:
        return f"{self.prefix}twin" if f"{self.prefix}twin" in self.memory else None

    @property
    def capabilities(self) -> Capabilities:
        return FLAVORS["postgresql" if self.kind.endswith("postgresql") else "mariadb"]

    def config(self) -> Config:
        return load_config(self.path)

    def people(self, *people: Person) -> None:
        self.ldif.write_text(HEADER + "\n" + "\n\n".join(p.ldif() for p in people) + "\n")

    def role(self, uid: str) -> str:
        return f"{self.prefix}{uid}"

    # ------------------------------------------------------------- runs

    def targets(
        self, cfg: Config, interfere: Callable[[Target], Target] | None = None, only: str | None = None
    ) -> Targets:
        """``interfere`` wraps the target under test and its twin; ``only``: that one target
        (a lost connection ends the run before the next target is applied)."""
        opened: dict[str, Target] = dict(self.memory)
        if interfere is not None:
            plain = Targets(cfg, {self.name}, opened)
            opened[self.name] = interfere(plain.get(self.name))
            if self.twin is not None:
                opened[self.twin] = interfere(self.memory[self.twin])
        return Targets(cfg, {only} if only else None, opened)

    def plan(self, now: datetime | None = None) -> Plan:
        cfg = self.config()
        with self.targets(cfg) as targets:
            plan = plan_run(cfg, RunContext(now or datetime.now(UTC), "pytest", "manual"), targets).plan
        self._same_plans(plan)
        return plan

    def apply(
        self,
        now: datetime | None = None,
        interfere: Callable[[Target], Target] | None = None,
        only: str | None = None,
    ) -> Plan:
        cfg = self.config()
        store = open_store(cfg)
        try:
            ctx = RunContext(now or datetime.now(UTC), "pytest", "manual", store=store)
            with self.targets(cfg, interfere, only) as targets:
                plan = apply_run(cfg, ctx, targets)
        finally:
            store.close()
        if only is None:
            self._same_plans(plan)
        return plan

    def ours(self, plan: Plan) -> TargetPlan:
        tp = plan.for_target(self.name)
        assert tp is not None
        return tp

    def _same_plans(self, plan: Plan) -> None:
        if self.twin is not None:
            twin = plan.for_target(self.twin)
            assert twin is not None
            assert exact(self.ours(plan), self.prefix) == exact(twin, self.prefix)  # the in-memory twin plans alike

    def state(self) -> Normal:
        """The normalised state of the target under test, checked against its twin."""
        cfg = self.config()
        with self.targets(cfg) as targets:
            states = targets.inspect_all()
        mine = normalise(states[self.name], self.prefix)
        if self.twin is not None:
            assert mine == normalise(states[self.twin], self.prefix), "the in-memory twin reads otherwise"
        return mine

    # ------------------------------------------------------------- by hand

    def _servers(self, on: Target | None) -> tuple[list[MemoryTarget], bool]:
        """The in-memory targets and whether the server a hand action reaches: every one,
        or just ``on``."""
        if on is None:
            return list(self.memory.values()), True
        return ([on] if isinstance(on, MemoryTarget) else []), not isinstance(on, MemoryTarget)

    def create_role(self, uid: str, login: bool = True, on: Target | None = None) -> None:
        """A DBA makes a role (MariaDB: an account) by hand."""
        name = self.role(uid)
        memories, server = self._servers(on)
        for mem in memories:
            mem.create_role(name, login=login)
        if not server:
            return
        if self.kind == "postgresql":
            with pg.admin_connect() as conn:
                conn.execute(sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(sql.Identifier(name)))
        elif self.kind == "mariadb":
            with M.admin_connect() as conn:
                M.q(conn, f"CREATE USER {M.account(conn, name)}" + ("" if login else " ACCOUNT LOCK"))

    def grant(self, member: str, group: str) -> None:
        """A DBA grants a business role by hand."""
        for mem in self.memory.values():
            mem.grant(self.role(member), self.role(group))
        if self.kind == "postgresql":
            with pg.admin_connect() as conn:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.role(group)),
                                                             sql.Identifier(self.role(member))))
        elif self.kind == "mariadb":  # the roles' ADMIN OPTION is the provisioner account's (their creator)
            with M.connect_as(f"{self.prefix}svc", self.password) as conn:
                M.q(conn, f"GRANT {M.ident(self.role(group))} TO {M.account(conn, self.role(member))}")

    @contextmanager
    def session(self, uid: str) -> Iterator[None]:
        """The person ``uid`` logged in (MariaDB: after a DBA set a password, which a server
        with ``capabilities.password_drift`` reports as drift)."""
        name, conns = self.role(uid), []
        for mem in self.memory.values():
            mem.open_sessions(name)
            if self.kind == "mariadb":
                mem.set_password(name)
        try:
            if self.kind == "postgresql":
                dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={name}"
                conns.append(psycopg.connect(dsn, autocommit=True))
            elif self.kind == "mariadb":
                M.set_password(name, "sesame")
                conns.append(M.connect_as(name, "sesame"))
            yield
        finally:
            for conn in conns:
                with suppress(Exception):
                    conn.close()

    def sessions(self) -> dict[str, int]:
        """Open sessions of the prefix's roles on the target under test (and its twin alike)."""
        cfg = self.config()
        with self.targets(cfg) as targets:
            states = targets.inspect_all()
        mine = {n: c for n, c in states[self.name].sessions.items() if n.startswith(self.prefix)}
        if self.twin is not None:
            assert mine == {n: c for n, c in states[self.twin].sessions.items() if n.startswith(self.prefix)}
        return mine

    def kill(self, target: Target) -> None:
        """A DBA (or a crash) ends the provisioner's session in the middle of an apply."""
        if isinstance(target, MemoryTarget):
            target.lose_connection()
        elif isinstance(target, PostgresTarget):
            pid = target.backend_pid()
            with pg.admin_connect() as conn:
                conn.execute("SELECT pg_catalog.pg_terminate_backend(%s, 5000)", (pid,))
        elif isinstance(target, MysqlTarget):
            thread = target.thread_id()
            with M.admin_connect() as conn:
                M.q(conn, "KILL CONNECTION %s", (thread,))
                deadline = time.monotonic() + 5
                while M.q(conn, "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = %s", (thread,)):
                    assert time.monotonic() < deadline, "KILL did not end the session"
                    time.sleep(0.05)


TARGET = {
    "memory-postgresql": 'type = "memory"\nflavor = "postgresql"\nsession_role = "{p}svc"\n',
    "memory-mariadb": 'type = "memory"\nflavor = "mariadb"\nsession_role = "{p}svc"\n',
}


@contextmanager
def backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    """A configuration with the target under test (and, for a server, its in-memory twin)."""
    p = pg.new_prefix() if kind != "mariadb" else f"my{uuid.uuid4().hex[:8]}_"
    (tmp_path / "mappings" / "rules").mkdir(parents=True)
    (tmp_path / "mappings" / "rules" / "r.toml").write_text(RULES.format(p=p))
    ldif = tmp_path / "directory.ldif"
    ldif.write_text(HEADER)
    sections = []
    password = ""
    try:
        if kind in TARGET:
            sections.append(f'[[targets]]\nname = "{p}sut"\n' + TARGET[kind].format(p=p))
        elif kind == "postgresql":
            with pg.admin_connect() as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(f"{p}svc")))
                # as deploy/least-privilege-postgresql.sql: a leaver's sessions can be ended
                conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(f"{p}svc")))
            dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={p}svc"
            sections.append(f'[[targets]]\nname = "{p}sut"\ntype = "postgresql"\ndsn = {json.dumps(dsn)}\n')
            sections.append(f'[[targets]]\nname = "{p}twin"\n' + TARGET["memory-postgresql"].format(p=p))
        else:
            login = M.create_login(p, tmp_path)
            password = login.password
            sections.append(
                f'[[targets]]\nname = "{p}sut"\ntype = "mysql"\nhost = "{M.HOST}"\nport = {M.PORT}\n'
                f'user = "{login.user}"\npassword = "file:{login.password_file}"\n'
                f'meta_database = "{login.meta_database}"\n'
            )
            sections.append(f'[[targets]]\nname = "{p}twin"\n' + TARGET["memory-mariadb"].format(p=p))
        path = tmp_path / "config.toml"
        path.write_text(
            f'[provisioner]\nmappings = "mappings"\nlog_format = "json"\nlog_level = "warning"\n'
            f'instance = "conformance"\n\n[naming]\nprefix = "{p}"\nmax_bytes = 63\n\n'
            f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n\n'
            f'[[sources]]\nname = "{p}ldif"\ntype = "ldif"\npath = "directory.ldif"\n\n'
            + "\n".join(sections) + RELAXED_SAFETY
        )
        cfg = load_config(path)
        memory = {t.name: build_target(t) for t in cfg.targets if t.type == "memory"}
        yield Backend(kind, p, path, ldif, {n: t for n, t in memory.items() if isinstance(t, MemoryTarget)}, password)
    finally:
        if kind == "postgresql":
            pg.drop_roles_with_prefix(p)
        elif kind == "mariadb":
            M.cleanup(p)
