"""Catalog privileges against a real PostgreSQL: apply, converge, drift, defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.core.values.plan import ChangeKind
from provisioner.errors import StalePlan
from tests.privileges.support import Env, environment, run


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        yield e.write()


def _kinds(plan: object) -> dict[str, int]:
    return plan.counts()  # type: ignore[attr-defined,no-any-return]


def test_apply_catalog_then_second_plan_is_empty(env: Env) -> None:
    p = env.prefix
    first = env.plan()
    lines = [c.describe() for c in first.changes]
    assert f"grant SELECT on table trading.orders in database {p}db0 to {p}trade_reader" in lines
    assert f"grant INSERT, UPDATE on table trading.orders in database {p}db0 to {p}trade_executor" in lines
    assert f"grant {p}trade_reader to {p}trade_executor" in lines
    assert any("future tables of" in line and f"to {p}trade_reader" in line for line in lines)
    reasons = {r.text for c in first.changes for r in c.reasons if c.role == f"{p}trade_reader"}
    assert any("grants SELECT on all tables in schema trading" in r and "catalog.toml" in r for r in reasons)
    notices = [n.message for t in first.targets for n in t.notices if n.code == "missing_object"]
    assert any("trading.not_created_yet" in m for m in notices), notices

    env.apply()
    assert env.has(f"{p}bkaczmarek", "INSERT", "trading.orders")
    assert env.has(f"{p}bkaczmarek", "SELECT", "trading.approvals")  # inherited from trade_reader
    assert not env.has(f"{p}bkaczmarek", "INSERT", "trading.approvals")
    assert not env.has(f"{p}bkaczmarek", "SELECT", "risk.positions")
    again = env.plan()
    assert again.changes == (), [c.describe() for c in again.changes]


def test_hand_made_grant_is_revoked_or_reported_per_policy(env: Env) -> None:
    p = env.prefix
    env.apply()
    with env.as_owner() as conn:
        run(conn, "GRANT DELETE ON trading.orders TO {}", f"{p}trade_reader")  # extras = revoke
        run(conn, "GRANT DELETE ON trading.orders TO {}", f"{p}trade_executor")  # extras = report
    plan = env.plan()
    assert [c.describe() for c in plan.changes] == [
        f"revoke DELETE on table trading.orders in database {p}db0 from {p}trade_reader"
    ]
    assert "extras = revoke" in plan.changes[0].reasons[0].text
    reported = [n.message for t in plan.targets for n in t.notices if n.code == "privilege_extra"]
    assert any(m.startswith(f"{p}trade_executor holds DELETE on table trading.orders") for m in reported)
    env.apply()
    assert not env.has(f"{p}trade_reader", "DELETE", "trading.orders")
    assert env.has(f"{p}trade_executor", "DELETE", "trading.orders")  # reported, left alone


def test_a_hand_made_grant_makes_a_saved_plan_stale(env: Env) -> None:
    env.apply()
    saved = env.plan()
    with env.as_owner() as conn:
        run(conn, "GRANT SELECT ON risk.limits TO {}", f"{env.prefix}trade_reader")
    with pytest.raises(StalePlan):
        env.apply(saved)


def test_table_created_later_by_the_owner_is_covered_by_default_privileges(env: Env) -> None:
    p = env.prefix
    env.apply()
    with env.as_owner() as conn:
        conn.execute("CREATE TABLE trading.allocations (id bigserial PRIMARY KEY, qty numeric)")
    assert env.has(f"{p}trade_reader", "SELECT", "trading.allocations")
    assert env.has(f"{p}bkaczmarek", "SELECT", "trading.allocations")
    assert not env.has(f"{p}trade_reader", "INSERT", "trading.allocations")
    assert env.plan().changes == ()


def test_column_privileges_and_functions(env: Env) -> None:
    p = env.prefix
    env.apply()
    approver = f"{p}trade_approver"
    with env.admin() as conn:
        cols = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'trading.approvals'::regclass AND attnum > 0 "
            "AND has_column_privilege(%s, attrelid, attnum, 'UPDATE') ORDER BY attname",
            (approver,),
        ).fetchall()
        fn = conn.execute(
            "SELECT has_function_privilege(%s, 'trading.approve_order(bigint)', 'EXECUTE')", (approver,)
        ).fetchone()
    assert [c[0] for c in cols] == ["approved_at", "approved_by", "status"]
    assert fn == (True,)
    assert not env.has(approver, "UPDATE", "trading.approvals")  # column-level only
    with env.as_owner() as conn:
        run(conn, "GRANT UPDATE (order_id) ON trading.approvals TO {}", approver)
    plan = env.plan()
    notes = [n.message for t in plan.targets for n in t.notices if n.code == "privilege_extra"]
    assert any("column trading.approvals(order_id)" in m for m in notes), notes


def test_roles_outside_the_catalog_and_unmanaged_roles_are_never_touched(env: Env) -> None:
    p = env.prefix
    with env.admin() as conn:
        run(conn, "CREATE ROLE {} NOLOGIN", f"{p}trade_reader")  # same name, not managed
    with env.as_owner() as conn:
        run(conn, "GRANT DELETE ON trading.orders TO {}", f"{p}trade_reader")
    plan = env.plan()
    assert not [c for c in plan.changes if c.role == f"{p}trade_reader"]
    codes = {(n.code, n.role) for t in plan.targets for n in t.notices}
    assert ("unmanaged", f"{p}trade_reader") in codes
    env.apply()
    assert env.has(f"{p}trade_reader", "DELETE", "trading.orders")


def test_inspection_statement_count_does_not_grow_with_tables(tmp_path: Path, role_prefix: str) -> None:
    from provisioner.targets.postgres import PostgresTarget

    with environment(tmp_path, role_prefix, load_schema=False) as env:
        env.write(catalog=WILDCARD_READER, rules=RULES_READER)
        with env.as_owner() as conn:
            conn.execute("CREATE SCHEMA trading")
        counts = []
        for batch in (range(10), range(10, 500)):
            with env.as_owner() as conn:
                conn.execute("; ".join(f"CREATE TABLE trading.t{i} (id int, v text)" for i in batch))
            env.apply()
            target = PostgresTarget(env.config().targets[0])
            try:
                before = target.statements_executed
                state = target.inspect()
                spent = target.statements_executed - before
            finally:
                target.close()
            assert state.privileges is not None
            tables = state.privileges.databases[env.databases[0]].tables["trading"]
            held = [g for g in state.privileges.grants if g.obj.kind == "table"]
            counts.append((spent, len(tables), len(held)))
    (small, n_small, g_small), (large, n_large, g_large) = counts
    assert (n_small, n_large, g_small, g_large) == (10, 500, 10, 500)
    assert small == large


WILDCARD_READER = """
[role.{p}trade_reader]
description = "Read every trading table."
owner = "Head of Trading"
[[role.{p}trade_reader.grants]]
on = "tables"
schema = "trading"
privileges = ["SELECT"]
"""


def test_several_databases_in_one_cluster(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    catalog = """
[role.{p}trade_reader]
description = "Read trading data in both databases."
owner = "Head of Trading"
extras = "revoke"
[[role.{p}trade_reader.grants]]
on = "tables"
schema = "risk"
privileges = ["SELECT"]
[[role.{p}trade_reader.grants]]
database = "{p}db1"
on = "schema"
schema = "risk"
privileges = ["USAGE"]
[[role.{p}trade_reader.grants]]
database = "{p}db1"
on = "tables"
schema = "risk"
objects = ["positions"]
privileges = ["SELECT", "UPDATE"]
"""
    rules = RULES_READER
    with environment(tmp_path, role_prefix, n_databases=2) as env:
        env.write(catalog=catalog, rules=rules)
        plan = env.plan()
        dbs = {c.param("database") for c in plan.changes if c.kind is ChangeKind.GRANT_PRIVILEGE}
        assert dbs == {f"{p}db0", f"{p}db1"}
        env.apply()
        assert env.has(f"{p}trade_reader", "SELECT", "risk.limits", f"{p}db0")
        assert not env.has(f"{p}trade_reader", "UPDATE", "risk.positions", f"{p}db0")
        assert env.has(f"{p}trade_reader", "UPDATE", "risk.positions", f"{p}db1")
        assert not env.has(f"{p}trade_reader", "SELECT", "risk.limits", f"{p}db1")
        with env.as_owner(f"{p}db1") as conn:
            run(conn, "GRANT SELECT ON risk.limits TO {}", f"{p}trade_reader")
        plan = env.plan()
        assert [c.describe() for c in plan.changes] == [
            f"revoke SELECT on table risk.limits in database {p}db1 from {p}trade_reader"
        ]
        env.apply()
        assert env.plan().changes == ()


RULES_READER = """
[[rule]]
id = "floor"
description = "trading floor reads"
grant = ["{p}trade_reader"]
when = {{ attr = "department", equals = "Trading" }}
"""
