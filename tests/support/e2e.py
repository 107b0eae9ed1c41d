"""Build a complete provisioner setup (config, mappings, least-privilege login) for a test."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from provisioner.config import Config, LdapSourceConfig, LdifSourceConfig, load_config
from provisioner.core.values.plan import Plan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.installation import open_store
from provisioner.engine.run import apply_run, plan_run
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.config import table, write_config

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "trader" }} ]

[[rule]]
id = "operations"
description = "operations settle"
grant = ["{p}ops_settlement", "{p}trade_reader"]
when = {{ attr = "department", equals = "Operations" }}

[[rule]]
id = "approvers"
description = "members of the approvers group (nested) approve"
grant = ["{p}trade_approver"]
when = {{ group = "approvers" }}

[[rule]]
id = "quoted"
description = "a role name with quotes and a semicolon"
grant = ['{p}odd "desk"; DROP ROLE postgres; --']
when = {{ attr = "title", equals = "Odd Desk" }}
"""


RELAXED_SAFETY = """
[safety]
# Small test directories: the breaker and the health gate have their own tests
# (tests/lifecycle); elsewhere they would trip on every leaver.
max_revocation_share = 1.0
max_mover_share = 1.0
max_identity_drop = 1.0
"""
"""Extra TOML appended to the config; pass ``extra=""`` (or your own) for the defaults."""


def source_toml(cfg: LdapSourceConfig | LdifSourceConfig) -> str:
    data = cfg.model_dump(exclude_none=True)
    secret = getattr(cfg, "bind_password", None)
    data["bind_password"] = secret.ref if secret else None
    return table("[[sources]]", {k: v for k, v in data.items() if not (k == "attributes" and not v)})


@dataclass
class Setup:
    path: Path
    prefix: str
    login: str
    dsn: str

    def config(self) -> Config:
        return load_config(self.path)

    def ctx(self, cfg: Config, store: StateStore | None = None, now: datetime | None = None) -> RunContext:
        return RunContext(now or datetime.now(UTC), "pytest", "manual", store=store)

    def plan(self, now: datetime | None = None) -> Plan:
        cfg = self.config()
        with Targets(cfg) as targets:
            return plan_run(cfg, self.ctx(cfg, now=now), targets).plan

    def apply(self, now: datetime | None = None, saved: Plan | None = None) -> Plan:
        cfg = self.config()
        store = open_store(cfg)  # as the CLI and the daemon open it: signed when [audit] signing_key is set
        try:
            with Targets(cfg) as targets:
                return apply_run(cfg, self.ctx(cfg, store, now), targets, saved)
        finally:
            store.close()


def person(dept: str, title: str = "Analyst", status: str = "active", **extra: str) -> dict[str, str]:
    """LDAP attributes of an employee (inetOrgPerson + hrPerson) for ``LdapOu.add_user``."""
    return {"departmentNumber": dept, "title": title, "employeeType": "employee", "hrStatus": status, **extra}


def make_setup(
    tmp_path: Path,
    source: LdapSourceConfig | LdifSourceConfig,
    prefix: str,
    *,
    drift: str = "report",
    protected: list[str] | None = None,
    rules: str = RULES,
    extra: str = RELAXED_SAFETY,
) -> Setup:
    """A least-privilege login (CREATEROLE, not superuser) and a config using it."""
    login = f"{prefix}svc"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(login)))
    dsn = " ".join(p for p in pg.admin_dsn().split() if not p.startswith("user=")) + f" user={login}"
    (tmp_path / "mappings" / "rules").mkdir(parents=True)
    (tmp_path / "mappings" / "rules" / "r.toml").write_text(rules.format(p=prefix))
    target = {"name": "pg", "type": "postgresql", "dsn": dsn, "drift": drift, "protected_roles": protected or []}
    path = write_config(
        tmp_path / "config.toml",
        sources=[source_toml(source)],
        targets=[target],
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        naming={"prefix": prefix},
        extra=extra,
    )
    return Setup(path, prefix, login, dsn)


def memberships(prefix: str) -> dict[str, set[str]]:
    """role -> groups it belongs to, for roles carrying ``prefix``."""
    with pg.admin_connect() as conn:
        rows = conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member "
            "JOIN pg_roles g ON g.oid = am.roleid WHERE m.rolname LIKE %s",
            (prefix + "%",),
        ).fetchall()
    out: dict[str, set[str]] = {}
    for member, group in rows:
        out.setdefault(member, set()).add(group)
    return out


def role_options(name: str) -> tuple[bool, datetime | None] | None:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    return (bool(row[0]), row[1]) if row else None
