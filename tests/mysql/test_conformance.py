"""One sequence, two targets: joiner, mover, leaver and rehire planned and applied against
PostgreSQL 15 and MariaDB 10.11 from the same directory, rules and config (issue 20).

Where the capabilities agree the plans are the same changes (kind, role, group, login) and
the inspected states the same logins and memberships; where they differ (MariaDB cannot
expire an account) the difference is the one the capabilities declare."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from provisioner.core.values.model import ActualRole
from provisioner.core.values.plan import Change, Plan, TargetPlan
from provisioner.engine.connections import Targets
from tests.mysql.support import MysqlSetup, Person, make_mysql_setup
from tests.support import mysql as M
from tests.support import pg


@pytest.fixture
def both(tmp_path: Path, role_prefix: str) -> Iterator[MysqlSetup]:
    """A config with a MariaDB and a PostgreSQL target, same prefix, same rules."""
    p = role_prefix
    try:
        login = M.create_login(p, tmp_path)
        env = make_mysql_setup(tmp_path, p, login)
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(f"{p}svc")))
        dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={p}svc"
        with env.setup.path.open("a") as f:
            f.write(f'\n[[targets]]\nname = "{p}pg"\ntype = "postgresql"\ndsn = {json.dumps(dsn)}\n')
        yield env
    finally:
        M.cleanup(p)


def shape(c: Change) -> tuple[Any, ...]:
    """What a change does, in no target's words."""
    return (c.kind.value, c.role, c.param("group"), c.param("login"))


def shapes(tp: TargetPlan) -> list[tuple[Any, ...]]:
    return sorted(shape(c) for c in tp.changes)


def pair(plan: Plan, p: str) -> tuple[TargetPlan, TargetPlan]:
    maria = plan.for_target(f"{p}maria")
    post = plan.for_target(f"{p}pg")
    assert maria is not None and post is not None
    return maria, post


def people_state(roles: dict[str, ActualRole], p: str) -> dict[str, tuple[bool, frozenset[str]]]:
    return {
        n: (r.login, frozenset(r.member_of))
        for n, r in roles.items()
        if n.startswith(p) and n != f"{p}svc" and r.marker is not None
    }


def states(env: MysqlSetup) -> dict[str, dict[str, tuple[bool, frozenset[str]]]]:
    with Targets(env.setup.config()) as targets:
        return {name: people_state(dict(s.roles), env.prefix) for name, s in targets.inspect_all().items()}


def step(env: MysqlSetup, *people: Person) -> tuple[TargetPlan, TargetPlan]:
    """Plan, compare the two targets' plans, apply, compare the inspected states."""
    p = env.prefix
    env.people(*people)
    maria, post = pair(env.setup.plan(), p)
    assert shapes(maria) == shapes(post)
    assert maria.dialect == "mariadb" and post.dialect == "postgresql"
    applied = env.setup.apply()
    a_maria, a_post = pair(applied, p)
    assert shapes(a_maria) == shapes(maria) and shapes(a_post) == shapes(post)
    after = states(env)
    assert after[f"{p}maria"] == after[f"{p}pg"]
    again = env.setup.plan()
    assert again.changes == ()  # both converged
    return maria, post


def test_joiner_mover_leaver_rehire_same_on_both_targets(both: MysqlSetup) -> None:
    env, p = both, both.prefix
    joiner, _ = step(env, Person("alice", "Trading"), Person("bob", "Operations"))
    assert (("create_role", f"{p}alice", None, True)) in shapes(joiner)
    mover, _ = step(env, Person("alice", "Operations"), Person("bob", "Operations"), Person("carol", "Trading"))
    assert ("revoke_membership", f"{p}alice", f"{p}trader", None) in shapes(mover)
    leaver_m, leaver_p = step(
        env,
        Person("alice", "Operations"),
        Person("bob", "Operations", status="terminated"),
        Person("carol", "Trading"),
    )
    assert ("alter_role", f"{p}bob", None, False) in shapes(leaver_m)
    # the leave instant: PostgreSQL's VALID UNTIL, MariaDB's recorded disable instant; both set
    for tp in (leaver_m, leaver_p):
        (lock,) = [c for c in tp.changes if c.role == f"{p}bob" and c.kind.value == "alter_role"]
        assert lock.param("valid_until") is not None
    rehire, _ = step(env, Person("alice", "Operations"), Person("bob", "Operations"), Person("carol", "Trading"))
    assert ("alter_role", f"{p}bob", None, True) in shapes(rehire)
    final = states(env)[f"{p}maria"]
    assert final[f"{p}bob"] == (True, frozenset({f"{p}ops", f"{p}reader"}))


def test_hand_grant_and_drop_after_retention_same_on_both_targets(both: MysqlSetup) -> None:
    env, p = both, both.prefix
    step(env, Person("alice", "Trading"), Person("bob", "Operations"))
    # brownfield: a DBA grants a business role by hand on both servers
    with M.connect_as(f"{p}svc", _maria_password(env)) as dba:
        M.q(dba, f"GRANT {M.ident(p + 'ops')} TO {M.account(dba, p + 'alice')}")
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}ops"), sql.Identifier(f"{p}alice")))
    maria, post = pair(env.setup.plan(), p)
    assert shapes(maria) == shapes(post) == []  # drift = report: never revoked by itself
    drift = [sorted((n.code, n.role) for n in tp.notices if n.role == f"{p}alice") for tp in (maria, post)]
    assert drift[0] == drift[1] and drift[0]
    assert states(env)[f"{p}maria"] == states(env)[f"{p}pg"]
    # bob leaves, and is dropped once the retention has passed
    step(env, Person("alice", "Trading"), Person("bob", "Operations", status="terminated"))
    later = datetime.now(UTC) + timedelta(days=400)
    env.people(Person("alice", "Trading"), Person("bob", "Operations", status="terminated"))
    maria, post = pair(env.setup.plan(now=later), p)
    assert ("drop_role", f"{p}bob", None, None) in shapes(maria)
    assert shapes(maria) == shapes(post)
    env.setup.apply(now=later)
    after = states(env)
    assert f"{p}bob" not in after[f"{p}maria"] and after[f"{p}maria"] == after[f"{p}pg"]


def _maria_password(env: MysqlSetup) -> str:
    cfg = env.setup.config()
    (target,) = [t for t in cfg.targets if t.name == f"{env.prefix}maria"]
    assert target.password is not None
    return target.password.resolve()
