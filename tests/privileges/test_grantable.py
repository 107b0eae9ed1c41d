"""Catalog grants on objects the provisioner's login cannot grant on (issue 14), against
a real PostgreSQL: a table a DBA created as another role in the catalog's schema, where the
login holds no grant option and is not (a member of) the owner.  The plan refuses those
grants as error notices naming the catalog file, the role and the object, and the rest of
the plan applies; nothing fails at apply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.privileges.support import Env, environment, run


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        yield e.write()


def refusals(plan: object) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.code == "not_grantable"]  # type: ignore[attr-defined]


def test_grants_the_login_cannot_give_are_refused_at_plan_time(env: Env) -> None:
    p = env.prefix
    other = f"{p}dba_team"
    with env.admin() as conn:  # brownfield: a DBA's table in the catalog's schema, owned by someone else
        run(conn, "CREATE ROLE {} NOLOGIN", other)
        run(conn, "GRANT USAGE, CREATE ON SCHEMA trading TO {}", other)
        run(conn, "SET ROLE {}", other)
        conn.execute("CREATE TABLE trading.settlement_keys (id int)")
        conn.execute("CREATE TABLE trading.shared_view_src (id int)")
        run(conn, "GRANT SELECT ON trading.shared_view_src TO {}", env.login)  # without grant option
        run(conn, "GRANT SELECT ON trading.shared_view_src TO {} WITH GRANT OPTION", env.owner)
        conn.execute("RESET ROLE")

    plan = env.plan()
    refused = refusals(plan)
    assert any(
        "trading.settlement_keys" in m and f"{p}trade_reader" in m and "catalog.toml" in m and "SELECT" in m
        for m in refused
    ), refused
    assert not any("shared_view_src" in m for m in refused), "a grant option through the owner role is enough"
    described = [c.describe() for c in plan.changes]
    assert not any("settlement_keys" in d for d in described), described
    assert f"grant SELECT on table trading.orders in database {p}db0 to {p}trade_reader" in described

    env.apply()  # nothing fails at apply
    assert env.has(f"{p}trade_reader", "SELECT", "trading.orders")
    assert env.has(f"{p}trade_reader", "SELECT", "trading.shared_view_src")
    assert not env.has(f"{p}trade_reader", "SELECT", "trading.settlement_keys")
    again = env.plan()
    assert again.changes == (), [c.describe() for c in again.changes]
    assert refusals(again), "reported in every plan until fixed"
