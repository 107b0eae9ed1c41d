"""Protected principals and break-glass accounts against the real PostgreSQL:
the bootstrap superuser, pg_* roles, replication roles, the provisioner's own
role and the configured list are refused at plan time even when a rule asks;
break-glass roles are never changed and are reported when used or granted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from provisioner.core.values.model import Reason
from provisioner.core.values.plan import ChangeKind, TargetPlan, make_change
from provisioner.engine.connections import Targets
from provisioner.engine.run import plan_run, safety
from provisioner.errors import SafetyViolation
from tests.lifecycle.support import access, person
from tests.support import pg
from tests.support.e2e import make_setup
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "greedy"
description = "asks for everything it must not get"
grant = ["postgres", "{p}repl", "{p}svc", "{p}vip", "{p}desk"]
when = {{ attr = "department", equals = "Trading" }}
"""


def test_protected_principals_refused_even_when_a_rule_asks(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    q = sql.Identifier
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(q(f"{p}repl")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(q(f"{p}vip")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(q(f"{p}glass")))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(q(f"{p}handed")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(q(f"{p}handed"), q(f"{p}glass")))
    for uid in ("ann", "repl", "svc", "vip"):
        ldap_ou.add_user(uid, **person("Trading"))
    ldap_ou.add_user("glass", **person("Trading", status="terminated"))
    extra = f'break_glass = ["{p}glass"]\n[safety]\nmax_revocation_share = 1.0\n'
    src = ldap_ou.config(name=f"{p}src")
    s = make_setup(tmp_path, src, p, rules=RULES, protected=[f"{p}vip"], extra=extra)
    with pg.admin_connect() as conn:
        before = conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname IN ('postgres')"
        ).fetchall()
    glass_dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={p}glass"
    with psycopg.connect(glass_dsn, autocommit=True) as glass_session:
        plan = s.apply()
        glass_session.execute("SELECT 1")  # never terminated
    notices = {(n.code, n.role) for t in plan.targets for n in t.notices}
    for name in ("postgres", f"{p}repl", f"{p}svc", f"{p}vip"):
        assert ("protected", name) in notices, name
    assert ("break_glass_session", f"{p}glass") in notices
    assert ("break_glass_grant", f"{p}glass") in notices
    touched = {c.role for c in plan.changes} | {str(c.param("group")) for c in plan.changes}
    assert touched.isdisjoint({"postgres", "pg_read_all_data", f"{p}repl", f"{p}svc", f"{p}vip", f"{p}glass"})
    now = access(p)
    assert now[f"{p}ann"] == (True, frozenset({f"{p}desk"}))
    assert now[f"{p}glass"] == (True, frozenset({f"{p}handed"}))
    assert now[f"{p}repl"] == (True, frozenset()) and now[f"{p}vip"] == (True, frozenset())
    with pg.admin_connect() as conn:
        assert (
            conn.execute("SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname IN ('postgres')").fetchall()
            == before
        )

    # a plan edited to touch them is refused by the safety checks (exit 3), every violation at once
    cfg = s.config()
    with Targets(cfg) as targets:
        outcome = plan_run(cfg, s.ctx(cfg), targets)
        why = [Reason("forged", "test")]
        forged = [
            make_change(ChangeKind.ALTER_ROLE, "postgres", why, login=False),
            make_change(ChangeKind.REVOKE_MEMBERSHIP, f"{p}glass", why, group=f"{p}handed"),
            make_change(ChangeKind.GRANT_MEMBERSHIP, f"{p}ann", why, group="pg_read_all_data"),
            make_change(ChangeKind.ALTER_ROLE, f"{p}repl", why, login=False),
            make_change(ChangeKind.ALTER_ROLE, s.login, why, login=False),
        ]
        tp = outcome.plan.targets[0]
        bad = replace(outcome.plan, targets=(TargetPlan(tp.target, tp.fingerprint, tuple(forged)),))
        with pytest.raises(SafetyViolation) as refused:
            safety(cfg, bad, outcome.actual)
    assert refused.value.exit_code == 3
    protected = [v for v in refused.value.violations if "touches protected role" in v]
    assert len(protected) == 5, refused.value.violations
    assert any("breaker" in v for v in refused.value.violations), "breaker trips are listed with the violations"
