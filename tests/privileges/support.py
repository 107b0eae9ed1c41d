"""A throw-away database (or several), an object-owner role, a least-privilege
provisioner login and a config + mappings using the sample directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from provisioner.config import Config, load_config
from provisioner.core.values.plan import Plan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.run import apply_run, plan_run
from tests.support import pg
from tests.support.config import write_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_SQL = (ROOT / "examples" / "trading-schema.sql").read_text()
LDIF = ROOT / "examples" / "directory.ldif"

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "\\\\btrader\\\\b" }} ]

[[rule]]
id = "trade-approvers"
description = "desk heads approve"
grant = ["{p}trade_approver"]
when = {{ attr = "title", regex = "^head of trading" }}
"""

CATALOG = """
[role.{p}trade_reader]
description = "Read trading data."
owner = "Head of Trading"
sensitivity = "medium"
extras = "revoke"
[[role.{p}trade_reader.grants]]
on = "database"
privileges = ["CONNECT"]
[[role.{p}trade_reader.grants]]
on = "schema"
schema = "trading"
privileges = ["USAGE"]
[[role.{p}trade_reader.grants]]
on = "tables"
schema = "trading"
privileges = ["SELECT"]
[[role.{p}trade_reader.grants]]
on = "sequences"
schema = "trading"
privileges = ["SELECT"]

[role.{p}trade_executor]
description = "Enter orders."
owner = "Head of Trading"
sensitivity = "high"
inherits = ["{p}trade_reader"]
[[role.{p}trade_executor.grants]]
on = "tables"
schema = "trading"
objects = ["orders", "executions"]
privileges = ["INSERT", "UPDATE"]
[[role.{p}trade_executor.grants]]
on = "sequences"
schema = "trading"
objects = ["orders_id_seq", "executions_id_seq"]
privileges = ["USAGE"]

[role.{p}trade_approver]
description = "Approve trades."
owner = "Chief Compliance Officer"
sensitivity = "critical"
inherits = ["{p}trade_reader"]
[[role.{p}trade_approver.grants]]
on = "columns"
schema = "trading"
objects = ["approvals"]
columns = ["status", "approved_by", "approved_at"]
privileges = ["UPDATE"]
[[role.{p}trade_approver.grants]]
on = "functions"
schema = "trading"
objects = ["approve_order"]
privileges = ["EXECUTE"]
[[role.{p}trade_approver.grants]]
on = "tables"
schema = "trading"
objects = ["not_created_yet"]
privileges = ["SELECT"]
"""


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def run(conn: psycopg.Connection[Any], template: str, *names: str) -> None:
    conn.execute(sql.SQL(template).format(*(ident(n) for n in names)))


def dsn_for(user: str, dbname: str) -> str:
    base = [p for p in pg.admin_dsn().split() if not p.startswith(("user=", "dbname="))]
    return " ".join([*base, f"user={user}", f"dbname={dbname}"])


@dataclass
class Env:
    tmp: Path
    prefix: str
    databases: list[str]
    owner: str
    login: str
    path: Path = field(init=False)

    def write(self, catalog: str = CATALOG, rules: str = RULES, **target: Any) -> Env:
        m = self.tmp / "mappings"
        (m / "rules").mkdir(parents=True, exist_ok=True)
        (m / "roles").mkdir(parents=True, exist_ok=True)
        (m / "rules" / "r.toml").write_text(rules.format(p=self.prefix))
        (m / "roles" / "catalog.toml").write_text(catalog.format(p=self.prefix))
        options = {"databases": self.databases, "manage_privileges": True, **target}
        pg_target = {"name": f"pg_{self.prefix}", "type": "postgresql", "dsn": dsn_for(self.login, self.databases[0])}
        self.path = write_config(
            self.tmp / "config.toml",
            # pinned, as docs/lifecycle.md advises: a derived name follows the source location
            instance=f"{self.prefix}install",
            sources=[{"name": f"nw_{self.prefix}", "type": "ldif", "path": str(LDIF)}],
            targets=[{**pg_target, **options}],
            state_url=f"sqlite:///{self.tmp / 'state.db'}",
            naming={"prefix": self.prefix},
        )
        return self

    def config(self) -> Config:
        return load_config(self.path)

    def ctx(self) -> RunContext:
        return RunContext(datetime.now(UTC), "pytest", "manual")

    def plan(self) -> Plan:
        cfg = self.config()
        with Targets(cfg) as targets:
            return plan_run(cfg, self.ctx(), targets).plan

    def apply(self, saved: Plan | None = None) -> Plan:
        cfg = self.config()
        with Targets(cfg) as targets:
            return apply_run(cfg, self.ctx(), targets, saved)

    @contextmanager
    def admin(self, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(dsn_for("postgres", dbname or self.databases[0]), autocommit=True) as conn:
            yield conn

    @contextmanager
    def as_owner(self, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        with self.admin(dbname) as conn:
            run(conn, "SET ROLE {}", self.owner)
            yield conn

    def has(self, role: str, privilege: str, table: str, dbname: str | None = None) -> bool:
        with self.admin(dbname) as conn:
            row = conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)).fetchone()
        return bool(row and row[0])


@contextmanager
def environment(tmp: Path, prefix: str, n_databases: int = 1, load_schema: bool = True) -> Iterator[Env]:
    """Fresh databases owned by ``{prefix}app_owner`` (with the sample trading
    schema), a CREATEROLE login that is a member of the owner; everything
    dropped afterwards (databases here, roles by the role_prefix fixture)."""
    owner, login = f"{prefix}app_owner", f"{prefix}svc"
    names = [f"{prefix}db{i}" for i in range(n_databases)]
    with pg.admin_connect() as conn:
        run(conn, "CREATE ROLE {} NOLOGIN", owner)
        run(conn, "CREATE ROLE {} LOGIN CREATEROLE", login)
        run(conn, "GRANT {} TO {}", owner, login)
        for name in names:
            run(conn, "CREATE DATABASE {} OWNER {}", name, owner)
    env = Env(tmp, prefix, names, owner, login)
    try:
        if load_schema:
            for name in names:
                with env.as_owner(name) as conn:
                    conn.execute(SCHEMA_SQL)
        yield env
    finally:
        with pg.admin_connect() as conn:
            for name in names:
                run(conn, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
