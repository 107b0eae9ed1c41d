"""The daemon's shortcuts on a target that manages privileges (issue 19), against a real
slapd and PostgreSQL: the catalog digest covers each managed database's objects and
ACLs, so a warm no-op short-circuits and a directory-only change plans against the
reused actual state -- and every hand-made privilege change (a GRANT, a new table, default
privileges, ...) moves the digest, so the next run inspects and plans exactly what a cold
run plans."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from provisioner.core.values.plan import Plan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.run import apply_run, plan_run
from provisioner.engine.warm import WarmState
from provisioner.sources.incremental import IncrementalReader
from provisioner.store.state import StateStore
from tests.lifecycle.support import RELAXED, person
from tests.privileges.support import Env, environment, run
from tests.support import pg
from tests.support.e2e import Setup, make_setup
from tests.support.fixtures import LdapOu

T0 = datetime(2031, 1, 4, 9, tzinfo=UTC)
RULES = """
[[rule]]
id = "traders"
description = "traders read trading data"
grant = ["{p}trade_reader"]
when = {{ attr = "department", equals = "Trading" }}
"""
CATALOG = """
[role.{p}trade_reader]
description = "Read trading data."
owner = "Head of Trading"
sensitivity = "low"
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
"""


@pytest.fixture(autouse=True)
def _no_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IncrementalReader, "overlap", timedelta(0))


@dataclass
class Daemon:
    s: Setup
    env: Env
    store: StateStore
    warm: WarmState

    def run(self, now: datetime, *, apply: bool = True, warm: bool = True) -> Plan:
        cfg = self.s.config()
        ctx = RunContext(now, "pytest", "schedule", store=self.store, warm=self.warm if warm else None)
        with Targets(cfg) as targets:
            return apply_run(cfg, ctx, targets) if apply else plan_run(cfg, ctx, targets).plan

    def digest(self) -> str:
        with Targets(self.s.config()) as targets:
            return targets.get("pg").catalog_digest() or ""


@pytest.fixture
def daemon(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> Iterator[Daemon]:
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("dan", **person("Operations"))
    with environment(tmp_path / "db", role_prefix + "x") as env:
        target = f"manage_privileges = true\ndatabases = {json.dumps(env.databases)}\n"
        s = make_setup(tmp_path, ldap_ou.config(name=f"{role_prefix}src"), role_prefix, rules=RULES,
                       extra=target + RELAXED, drift="revoke")
        (tmp_path / "mappings" / "roles").mkdir()
        (tmp_path / "mappings" / "roles" / "c.toml").write_text(CATALOG.format(p=role_prefix))
        with pg.admin_connect() as conn:
            run(conn, "GRANT {} TO {}", env.owner, s.login)
        cfg = s.config()
        store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
        try:
            yield Daemon(s, env, store, WarmState())
        finally:
            store.close()


def shape(plan: Plan) -> set[tuple[str, str, str]]:
    return {(c.kind.value, c.role, json.dumps(c.params, sort_keys=True, default=str)) for c in plan.changes}


def warmed(d: Daemon) -> None:
    """Applied, then no-op runs until one short-circuits: other suites on the shared cluster
    create and drop roles, which moves the (cluster-wide) role digest between two runs."""
    assert d.run(T0).has_changes
    for minute in range(1, 12):
        noop = d.run(T0 + timedelta(minutes=minute))
        assert not noop.has_changes
        if "short_circuit" in noop.meta:
            return
    raise AssertionError("a no-op run of a privileges-managing target never short-circuited")


Conn = psycopg.Connection[Any]
CHANGES: dict[str, Callable[[Conn, str], None]] = {
    "table grant": lambda c, p: run(c, "GRANT INSERT ON trading.orders TO {}", p + "trade_reader"),
    "table revoke": lambda c, p: run(c, "REVOKE SELECT ON trading.orders FROM {}", p + "trade_reader"),
    "new table": lambda c, p: run(c, "CREATE TABLE trading.{} (id int)", p + "fresh"),
    "dropped table": lambda c, p: run(c, "DROP TABLE trading.settlements"),
    "column grant": lambda c, p: run(c, "GRANT UPDATE (status) ON trading.approvals TO {}", p + "trade_reader"),
    "function grant": lambda c, p: run(c, "GRANT EXECUTE ON FUNCTION trading.approve_order(bigint) TO {}",
                                       p + "trade_reader"),
    "schema grant": lambda c, p: run(c, "GRANT USAGE ON SCHEMA risk TO {}", p + "trade_reader"),
    "database grant": lambda c, p: run(c, "REVOKE CONNECT ON DATABASE {} FROM PUBLIC", p + "xdb0"),
    "default privileges": lambda c, p: run(c, "ALTER DEFAULT PRIVILEGES IN SCHEMA trading GRANT INSERT ON TABLES TO {}",
                                           p + "trade_reader"),
    "new schema": lambda c, p: run(c, "CREATE SCHEMA {}", p + "extra"),
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_a_privilege_change_forces_a_fresh_inspect_and_the_cold_plan(
    kind: str, daemon: Daemon, role_prefix: str
) -> None:
    assert daemon.run(T0).has_changes  # then a full no-op: the warm state holds its facts
    assert not daemon.run(T0 + timedelta(minutes=1)).has_changes
    before = daemon.digest()
    with daemon.env.as_owner() as conn:
        CHANGES[kind](conn, role_prefix)
    assert daemon.digest() != before
    warm = daemon.run(T0 + timedelta(minutes=3), apply=False)
    assert "short_circuit" not in warm.meta and "reused_actual" not in warm.meta
    cold = daemon.run(T0 + timedelta(minutes=3), apply=False, warm=False)
    assert shape(warm) == shape(cold)


def test_a_warm_no_op_short_circuits(daemon: Daemon) -> None:
    """Needs a quiet cluster: other suites' roles move the (cluster-wide) digest."""
    warmed(daemon)


def test_directory_change_reuses_the_actual_state_and_plans_what_a_cold_run_plans(
    daemon: Daemon, ldap_ou: LdapOu, role_prefix: str
) -> None:
    assert daemon.run(T0).has_changes
    assert not daemon.run(T0 + timedelta(minutes=1)).has_changes
    ldap_ou.modify(ldap_ou.user_dn("dan"), departmentNumber="Trading", title="Bond Trader")
    for minute in range(20, 30):  # until no other suite moved the cluster's roles in between
        warm = daemon.run(T0 + timedelta(minutes=minute), apply=False)
        if "reused_actual" in warm.meta:
            break
    assert set(warm.meta["reused_actual"]) == {"pg"}
    cold = daemon.run(T0 + timedelta(minutes=30), apply=False, warm=False)
    assert shape(warm) == shape(cold) and any(c.role == f"{role_prefix}dan" for c in warm.changes)
    applied = daemon.run(T0 + timedelta(minutes=31))
    assert shape(applied) == shape(cold)
    assert not daemon.run(T0 + timedelta(minutes=32)).has_changes
