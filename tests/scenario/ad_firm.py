"""The firm of tests/scenario/test_ad_week.py: two teams' configurations and mappings, the
DBAs' brownfield on PostgreSQL and MariaDB, and the ``firm`` fixture (registered in conftest)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg import sql

from tests.scenario.firm import Directory, MyAccount, PgRole, Result, cli, my_accounts, pg_roles
from tests.support import mysql as my
from tests.support import pg
from tests.support.samba import ADMIN_DN, BASE, SambaDC

LONDON = ZoneInfo("Europe/London")

TRADING_RULES = """
[[rule]]
id = "desk"
description = "the trading desk enters orders and reads market data"
grant = ["{p}desk_trader", "{p}market_data_reader"]
when = {{ attr = "department", equals = "Trading" }}

[[rule]]
id = "operations"
description = "operations settle trades"
grant = ["{p}ops_settlement"]
when = {{ attr = "department", equals = "Operations" }}

[[rule]]
id = "approvers"
description = "members of the trade-approvers group approve trades"
grant = ["{p}trade_approver"]
when = {{ group = "trade-approvers" }}
"""

TRADING_CATALOG = """
[role.{p}trade_approver]
description = "Approve trades above the desk limit."
owner = "Head of Trading"
sensitivity = "critical"

[role.{p}desk_trader]
description = "Enter orders."
owner = "Head of Trading"
sensitivity = "high"

[role.{p}ops_settlement]
description = "Settle trades."
owner = "Head of Operations"
sensitivity = "medium"
"""

TRADING_SOD = """
[[policy]]
id = "approve-execute"
description = "No one both enters and approves trades (FINRA 3110)."
severity = "critical"
conflicts = [ {{ role = "{p}desk_trader" }}, {{ role = "{p}trade_approver" }} ]
"""

RISK_RULES = """
[[rule]]
id = "risk"
description = "risk analysts read positions and market data"
grant = ["{p}risk_analyst", "{p}market_data_reader"]
when = {{ attr = "department", equals = "Risk" }}
"""

BUSINESS = ("desk_trader", "market_data_reader", "ops_settlement", "trade_approver", "reporting_reader", "risk_analyst")


@dataclass
class Firm:
    p: str
    dc: SambaDC
    trading: Directory
    risk: Directory
    trading_cfg: Path
    risk_cfg: Path
    schema: str
    my_svc: str

    # ---- the operator's commands

    def plan(self, cfg: Path | None = None, ok: tuple[int, ...] = (0, 2, 3)) -> tuple[Result, dict[str, Any]]:
        """``plan --format json --detailed-exitcode``: the exit code and the plan."""
        res = cli("plan", "-c", str(cfg or self.trading_cfg), "--format", "json", "--detailed-exitcode", ok=ok)
        return res, json.loads(res.out)

    def apply(self, reason: str, cfg: Path | None = None, *extra: str, ok: tuple[int, ...] = (0,)) -> Result:
        return cli("apply", "-c", str(cfg or self.trading_cfg), "--reason", reason, *extra, ok=ok)

    def settled(self, cfg: Path | None = None, code: int = 0) -> dict[str, Any]:
        """After an apply the next plan changes nothing (exit 0, or 3 while error notices stand)."""
        res, doc = self.plan(cfg, ok=(code,))
        assert all(not t["changes"] for t in doc["targets"]), [t["changes"] for t in doc["targets"]]
        return doc

    # ---- what the DBAs see

    def pg(self) -> dict[str, PgRole]:
        return pg_roles(self.p)

    def maria(self) -> dict[str, MyAccount]:
        return my_accounts(self.p, self.my_svc)

    def r(self, *names: str) -> frozenset[str]:
        return frozenset(self.p + n for n in names)


def _config(
    tmp: Path,
    *,
    instance: str,
    p: str,
    pg_login: str,
    directory: Directory,
    dc: SambaDC,
    password_env: str,
    extra_targets: str = "",
    drift: str = "report",
    extra: str = "",
) -> Path:
    dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={pg_login}"
    body = f"""
[provisioner]
instance = "{instance}"
service_identity = "svc-{instance}"
mappings = "mappings"
log_format = "json"
log_level = "info"

[state]
url = "sqlite:///{tmp / "state.db"}"

[naming]
prefix = "{p}"

[lifecycle]
timezone = "Europe/London"
vanish_after_runs = 1

[safety]
# the firm's policy: more than one leaver in one run needs an operator's override
max_revocation_share = 1.0
max_revocations = 1
max_mover_share = 1.0
max_identity_drop = 0.5

[alerts]
min_sensitivity = "high"

[[sources]]
name = "corp-ad"
type = "ldap"
preset = "ad"
url = "{dc.url}"
bind_dn = "{ADMIN_DN}"
bind_password = "env:{password_env}"
ca_file = "{dc.ca_file}"
user_base = "{directory.people}"
group_base = "{directory.groups}"
timeout = 60

[sources.attributes]
hire_date = {{ attribute = "info", formats = ["%d/%m/%Y", "%d.%m.%Y"] }}

[[targets]]
name = "pg"
type = "postgresql"
dsn = {json.dumps(dsn)}
drift = "{drift}"
protected_roles = ["{p}dba_jane"]
{extra_targets}
{extra}
"""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.toml"
    path.write_text(body)
    return path


def _mappings(root: Path, p: str, rules: str, catalog: str = "", sod: str = "") -> None:
    for sub, text in (("rules", rules), ("roles", catalog), ("sod", sod)):
        if text:
            (root / "mappings" / sub).mkdir(parents=True, exist_ok=True)
            (root / "mappings" / sub / "firm.toml").write_text(text.format(p=p))


@pytest.fixture
def firm(tmp_path: Path, samba_dc: SambaDC, role_prefix: str) -> Iterator[Firm]:
    p = role_prefix
    ou = f"OU=f{secrets.token_hex(4)},{BASE}"
    samba_dc.ldbadd([(ou, {"objectClass": "organizationalUnit"})])
    trading = Directory(samba_dc, f"OU=trading,{ou}")
    risk = Directory(samba_dc, f"OU=risk,{ou}")
    password_env = f"SCENARIO_AD_{secrets.token_hex(4).upper()}"
    os.environ[password_env] = samba_dc.password
    schema = f"{p}trading"

    # ---- the DBAs' world before provisioner
    with pg.admin_connect() as conn:
        for login in (f"{p}svc", f"{p}risk_svc"):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(login)))
        for role in BUSINESS:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + role)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in ("orders", "approvals", "positions"):
            conn.execute(sql.SQL("CREATE TABLE {}.{} (id int)").format(sql.Identifier(schema), sql.Identifier(table)))
        for role, privs, table in (
            ("desk_trader", "SELECT, INSERT", "orders"),
            ("trade_approver", "SELECT, UPDATE", "approvals"),
            ("ops_settlement", "SELECT", "orders"),
            ("risk_analyst", "SELECT", "positions"),
            ("reporting_reader", "SELECT", "orders"),
        ):
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(p + role)))
            conn.execute(
                sql.SQL("GRANT " + privs + " ON {}.{} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(p + role)
                )
            )
        # a DBA's own login, in a business role since long before provisioner
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dba_jane")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}desk_trader"), sql.Identifier(f"{p}dba_jane")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"), sql.Identifier(f"{p}dba_jane")))

    my_login = my.create_login(p, tmp_path)
    with my.admin_connect() as conn:
        svc = my.account(conn, my_login.user)
        for role in ("desk_trader", "market_data_reader", "ops_settlement", "trade_approver", "reporting_reader"):
            my.q(conn, f"CREATE ROLE {my.ident(p + role)}")
            my.q(conn, f"GRANT {my.ident(p + role)} TO {svc} WITH ADMIN OPTION")
        my.q(conn, f"CREATE USER {my.account(conn, p + 'dba_olga')}")
        my.q(conn, f"GRANT {my.ident(p + 'desk_trader')} TO {my.account(conn, p + 'dba_olga')}")
    maria = f"""
[[targets]]
name = "maria"
type = "mysql"
host = "{my.HOST}"
port = {my.PORT}
user = "{my_login.user}"
password = "file:{my_login.password_file}"
meta_database = "{my_login.meta_database}"
drift = "report"
"""
    key = tmp_path / "trading" / "audit-key.pem"
    key.parent.mkdir()
    public = cli("audit", "keygen", "--out", str(key)).out
    assert public.startswith("-----BEGIN PUBLIC KEY-----"), public
    (tmp_path / "audit-pub.pem").write_text(public)  # what the examiner keeps
    trading_cfg = _config(
        tmp_path / "trading", instance="trading-prod", p=p, pg_login=f"{p}svc", directory=trading,
        dc=samba_dc, password_env=password_env, extra_targets=maria,
        extra=f'[audit]\nsigning_key = "file:{key}"\ncheckpoint_dir = "{tmp_path / "worm"}"\n',
    )  # fmt: skip
    _mappings(tmp_path / "trading", p, TRADING_RULES, TRADING_CATALOG, TRADING_SOD)
    risk_cfg = _config(
        tmp_path / "risk", instance="risk-prod", p=p, pg_login=f"{p}risk_svc", directory=risk,
        dc=samba_dc, password_env=password_env, drift="revoke",
    )  # fmt: skip
    _mappings(tmp_path / "risk", p, RISK_RULES)
    try:
        yield Firm(p, samba_dc, trading, risk, trading_cfg, risk_cfg, schema, my_login.user)
    finally:
        my.cleanup(p)
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        with samba_dc.admin() as conn:
            conn.search(ou, "(objectClass=*)", attributes=["distinguishedName"])
            for dn in sorted((e["dn"] for e in conn.response if e.get("type") == "searchResEntry"), key=len, reverse=True):
                conn.delete(dn)


def uk(day: datetime, fmt: str) -> str:
    return day.astimezone(LONDON).strftime(fmt)
