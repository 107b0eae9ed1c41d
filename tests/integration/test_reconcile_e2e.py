"""End to end against a real slapd and a real PostgreSQL: three syncs of
joiners, movers and leavers; idempotence; safety around unmanaged, protected
and oddly named roles; stale saved plans."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg import sql

from provisioner.errors import SourceUnavailable, SourceUnhealthy, StalePlan
from tests.support import pg
from tests.support.e2e import make_setup, memberships, person, role_options
from tests.support.fixtures import LdapOu


def test_three_syncs_joiners_movers_leavers(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    bob = ldap_ou.add_user("bob", **person("Operations", "Settlements Analyst"))
    carol = ldap_ou.add_user("carol", **person("Trading", "Head of Trading"))
    inner = ldap_ou.add_group("desk-heads", [carol])
    ldap_ou.add_group("approvers", [inner])  # nested: carol approves through desk-heads
    setup = make_setup(tmp_path, ldap_ou.config(), p)

    # sync 1: joiners
    plan = setup.apply()
    assert plan.has_changes
    assert memberships(p) == {
        f"{p}alice": {f"{p}trade_executor", f"{p}trade_reader"},
        f"{p}bob": {f"{p}ops_settlement", f"{p}trade_reader"},
        f"{p}carol": {f"{p}trade_approver"},
    }
    assert role_options(f"{p}alice") == (True, None)
    assert not setup.plan().has_changes, "a second plan after apply must be empty"

    # sync 2: alice moves to operations; dave joins
    ldap_ou.modify(alice, departmentNumber="Operations", title="Operations Analyst")
    ldap_ou.add_user("dave", **person("Trading", "FX Trader"))
    plan = setup.apply()
    kinds = sorted((c.kind.value, c.role, str(c.param("group"))) for c in plan.changes)
    assert ("revoke_membership", f"{p}alice", f"{p}trade_executor") in kinds
    assert ("grant_membership", f"{p}alice", f"{p}ops_settlement") in kinds
    revoke = next(c for c in plan.changes if c.kind.value == "revoke_membership")
    assert revoke.reasons[0].rule == "lifecycle:mover"
    assert memberships(p)[f"{p}alice"] == {f"{p}ops_settlement", f"{p}trade_reader"}
    assert memberships(p)[f"{p}dave"] == {f"{p}trade_executor", f"{p}trade_reader"}

    # sync 3: bob terminated in HR, dave deleted from the directory
    ldap_ou.modify(bob, hrStatus="terminated")
    ldap_ou.delete(ldap_ou.user_dn("dave"))
    now = datetime.now(UTC)
    setup.apply(now=now)
    after = memberships(p)
    for leaver in ("bob", "dave"):
        assert f"{p}{leaver}" not in after, f"{leaver} kept memberships"
        login, valid_until = role_options(f"{p}{leaver}")  # type: ignore[misc]
        assert login is False and valid_until is not None and valid_until <= datetime.now(UTC)
    assert after[f"{p}alice"] == {f"{p}ops_settlement", f"{p}trade_reader"}
    assert not setup.plan().has_changes


def test_unmanaged_protected_and_quoted_roles(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    odd = f'{p}odd "desk"; DROP ROLE postgres; --'
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}erin")))  # unmanaged namesake
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}keep")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}keep"), sql.Identifier(f"{p}erin")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}vip")))
    ldap_ou.add_user("erin", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("vip", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("frank", **person("Legal", "Odd Desk"))
    setup = make_setup(tmp_path, ldap_ou.config(), p, protected=[f"{p}vip"])
    plan = setup.apply()
    notices = {(n.code, n.role) for t in plan.targets for n in t.notices}
    assert ("unmanaged", f"{p}erin") in notices
    assert ("protected", f"{p}vip") in notices
    assert memberships(p).get(f"{p}erin") == {f"{p}keep"}
    assert f"{p}vip" not in memberships(p)
    assert memberships(p)[f"{p}frank"] == {odd}
    assert role_options("postgres") is not None
    with pg.admin_connect() as conn:
        comment = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (odd,)
        ).fetchone()
    assert comment is not None and comment[0].startswith("provisioner:managed ")
    assert not setup.plan().has_changes


def test_saved_plan_is_refused_when_target_changed(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    ldap_ou.add_user("gina", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    saved = setup.plan()
    with pg.admin_connect() as conn:  # unrelated to the plan: a shared cluster changes all the time
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{p}unrelated")))
    unrelated = setup.plan()
    assert unrelated.targets[0].fingerprint == saved.targets[0].fingerprint
    with pg.admin_connect() as conn:  # a hand-made role with the name the plan is about to create
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}gina")))
    with pytest.raises(StalePlan, match="Saved plan is stale"):
        setup.apply(saved=saved)
    assert f"{p}gina" not in memberships(p)
    fresh = setup.plan()
    assert any(n.code == "unmanaged" and n.role == f"{p}gina" for n in fresh.targets[0].notices)
    setup.apply(saved=fresh)
    assert f"{p}gina" not in memberships(p), "a hand-made namesake must not be adopted"


def test_empty_or_unreachable_directory_revokes_nothing(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    hank = ldap_ou.add_user("hank", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    setup.apply()
    ldap_ou.delete(hank)
    with pytest.raises(SourceUnhealthy, match="no identities"):
        setup.apply()
    bad = make_setup(tmp_path / "bad", ldap_ou.config(url="ldap://127.0.0.1:1"), p + "b")
    with pytest.raises(SourceUnavailable):
        bad.apply()
    assert memberships(p)[f"{p}hank"] == {f"{p}trade_executor", f"{p}trade_reader"}


def test_large_plan_split_into_transactions_converges(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    from tests.support.e2e import RELAXED_SAFETY

    p = role_prefix
    for i in range(6):
        ldap_ou.add_user(f"u{i}", **person("Trading" if i % 2 else "Operations", "Equity Trader"))
    extra = RELAXED_SAFETY + "max_changes_per_transaction = 4\n"
    setup = make_setup(tmp_path, ldap_ou.config(), p, extra=extra)
    plan = setup.apply()
    assert len(plan.changes) > 4
    from provisioner.store.state import StateStore

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    kinds = [r.content["kind"] for r in store.iter_audit()]
    store.close()
    assert kinds.count("apply_intent") >= 3, kinds
    assert kinds.count("change_applied") == len(plan.changes)
    assert memberships(p)[f"{p}u1"] == {f"{p}trade_executor", f"{p}trade_reader"}
    assert memberships(p)[f"{p}u0"] == {f"{p}ops_settlement", f"{p}trade_reader"}
    assert not setup.plan().has_changes
