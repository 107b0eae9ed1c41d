"""Every privilege a managed role or PUBLIC holds is seen (issue 16, findings 1 and 2).

Brownfield: a business role created by a DBA (not managed) holds hand grants and
keeps them; a rule role outside the catalog and a person's login role get hand
grants; PostgreSQL's PUBLIC defaults are in force.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.core.governance.alerts import AlertPolicy, History, Severity, evaluate
from provisioner.core.privileges.catalog import Sensitivity
from provisioner.core.values.plan import Plan
from provisioner.engine.recovery import planned_event
from provisioner.mappings import load_mappings
from tests.privileges.support import CATALOG, RULES, Env, environment, run

DEPT_RULE = """
[[rule]]
id = "dept-trading"
description = "everyone in Trading"
grant = ["{p}dept_trading"]
when = {{ attr = "department", equals = "Trading" }}
"""


def notices(plan: Plan, code: str) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.code == code]


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        with e.admin() as conn:
            run(conn, "CREATE ROLE {} NOLOGIN", f"{role_prefix}dba_reporting")  # pre-existing, unmanaged
            run(conn, "GRANT SELECT ON trading.orders TO {}", f"{role_prefix}dba_reporting")
        yield e.write(rules=RULES + DEPT_RULE)


def test_hand_grants_to_login_and_rule_roles_are_drift_rated_by_sensitivity(env: Env) -> None:
    p = env.prefix
    env.apply()
    with env.as_owner() as conn:
        run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{p}bkaczmarek")
        run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{p}dept_trading")
    plan = env.plan()
    drift = notices(plan, "privilege_drift")
    assert any(
        m.startswith(f"managed login role {p}bkaczmarek holds UPDATE on table trading.approvals in database {p}db0")
        and "[sensitivity critical]" in m
        and f"({p}trade_approver grants on it)" in m
        for m in drift
    ), drift
    assert any(m.startswith(f"managed role {p}dept_trading holds UPDATE on table trading.approvals") for m in drift)
    assert not any(f"{p}dba_reporting" in m for m in drift), "an unmanaged role is not provisioner's to judge"
    assert plan.changes == ()  # drift = report: nothing revoked


def test_drift_revoke_takes_hand_grants_back_and_leaves_unmanaged_roles(env: Env) -> None:
    p = env.prefix
    env.write(rules=RULES + DEPT_RULE, drift="revoke")
    env.apply()
    with env.as_owner() as conn:
        run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{p}bkaczmarek")
        run(conn, "GRANT UPDATE, DELETE ON trading.approvals TO {}", f"{p}dept_trading")
        run(conn, "GRANT EXECUTE ON FUNCTION trading.approve_order(bigint) TO {}", f"{p}lferreira")
    plan = env.plan()
    lines = sorted(c.describe() for c in plan.changes)
    assert lines == sorted(
        [
            f"revoke UPDATE on table trading.approvals in database {p}db0 from {p}bkaczmarek",
            f"revoke UPDATE, DELETE on table trading.approvals in database {p}db0 from {p}dept_trading",
            f"revoke EXECUTE on function trading.approve_order(bigint) in database {p}db0 from {p}lferreira",
        ]
    ), lines
    assert all("drift = revoke" in c.reasons[0].text for c in plan.changes)
    env.apply()
    assert not env.has(f"{p}bkaczmarek", "UPDATE", "trading.approvals")
    assert not env.has(f"{p}tobrien", "DELETE", "trading.approvals")  # was through dept_trading
    assert env.has(f"{p}dba_reporting", "SELECT", "trading.orders")  # brownfield role untouched
    assert env.plan().changes == ()


def test_public_defaults_are_reported(env: Env) -> None:
    p = env.prefix
    env.apply()
    plan = env.plan()
    public = notices(plan, "public_privilege")
    assert any(
        m.startswith(f"PUBLIC holds EXECUTE on function trading.approve_order(bigint) in database {p}db0")
        and "[sensitivity critical]" in m
        for m in public
    ), public
    assert any(m.startswith(f"PUBLIC holds CONNECT, TEMPORARY on database {p}db0") for m in public), public
    assert plan.changes == ()


def test_public_revoke_is_opt_in_and_keeps_catalog_access(env: Env) -> None:
    p = env.prefix
    env.apply()
    env.write(catalog=CATALOG + '\n[public]\nprivileges = "revoke"\n', rules=RULES + DEPT_RULE)
    plan = env.plan()
    lines = [c.describe() for c in plan.changes]
    assert f"revoke EXECUTE on function trading.approve_order(bigint) in database {p}db0 from public" in lines
    assert f"revoke CONNECT, TEMPORARY on database {p}db0 from public" in lines
    env.apply()
    with env.admin() as conn:
        row = conn.execute(
            "SELECT has_function_privilege(%s, 'trading.approve_order(bigint)', 'EXECUTE'),"
            " has_function_privilege(%s, 'trading.approve_order(bigint)', 'EXECUTE'),"
            " has_database_privilege(%s, current_database(), 'CONNECT')",
            (f"{p}dba_reporting", f"{p}hmorrow", f"{p}dba_reporting"),
        ).fetchone()
    assert row == (False, True, False)
    assert notices(env.plan(), "public_privilege") == []


def test_drift_on_sensitive_objects_alerts_when_the_run_closes(env: Env) -> None:
    p = env.prefix
    env.apply()
    with env.as_owner() as conn:
        run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{p}bkaczmarek")  # critical object
        run(conn, "GRANT SELECT ON reference.instruments TO {}", f"{p}bkaczmarek")  # no catalog role: low
    plan = env.plan()
    record = planned_event(env.ctx(), plan).content()
    catalog = load_mappings(env.config().mappings_dir).catalog
    alerts = evaluate([record], catalog, History(), AlertPolicy())
    drift = [a for a in alerts if a.key.startswith("privilege_drift:")]
    people = [a for a in drift if a.facts["role"] == f"{p}bkaczmarek"]
    assert [(a.severity, a.facts["sensitivity"]) for a in people] == [(Severity.CRITICAL, "critical")], people
    assert "UPDATE on table trading.approvals" in people[0].body
    public = [a for a in drift if a.facts["role"] == "public"]
    assert any("approve_order" in a.body for a in public), public
    low = evaluate([record], catalog, History(), AlertPolicy(min_sensitivity=Sensitivity.LOW))
    assert any("reference.instruments" in a.body for a in low)
