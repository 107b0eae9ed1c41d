"""Roles templated from directory groups, end to end against a real slapd and a
real PostgreSQL, in a brownfield cluster (a DBA-made group role and a hand grant
exist before the first run)."""

from __future__ import annotations

from pathlib import Path

from psycopg import sql

from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "everyone"
description = "every active person reads reports"
grant = ["{p}readers", "{p}dept_{{department}}"]
when = {{ attr = "department", present = true }}

[[rule]]
id = "ldap-groups"
description = "a NOLOGIN role per directory group under ou=groups, temporary groups excepted"
grant = ["{p}grp_{{group}}"]
groups = {{ under = "{groups}", match = "(?!tmp-).*" }}
when = {{ attr = "department", present = true }}
"""


def _role_comment(name: str) -> str | None:
    with pg.admin_connect() as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (name,)
        ).fetchone()
    return None if row is None else row[0]


def test_group_roles_are_templated_from_transitive_groups(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    # brownfield: the DBAs made grp_algo (with its own privileges) and granted it to a contractor by hand
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}grp_algo")))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}handmade")))
    alice = ldap_ou.add_user("alice", **person("Trading", "Quant"))
    bob = ldap_ou.add_user("bob", **person("Operations", "Settlements Officer"))
    carol = ldap_ou.add_user("carol", **person("Risk", "Risk Analyst"))
    gone = ldap_ou.add_user("gina", **person("Risk", "Risk Analyst", status="terminated"))
    ldap_ou.add_group("algo", [alice])
    desk_heads = ldap_ou.add_group("Desk Heads", [carol])
    ldap_ou.add_group("approvers", [desk_heads, bob])  # carol through Desk Heads
    ldap_ou.add_group("tmp-migration", [alice, bob])  # refused by the cn pattern
    ldap_ou.add_group("Risk Desk", [carol, gone])
    ldap_ou.add_group("risk-desk", [bob])  # normalises like "Risk Desk": a collision
    setup = make_setup(tmp_path, ldap_ou.config(), p, rules=RULES.replace("{groups}", ldap_ou.groups))

    plan = setup.apply()
    got = memberships(p)
    assert got[f"{p}alice"] == {f"{p}readers", f"{p}dept_trading", f"{p}grp_algo"}
    assert got[f"{p}bob"] == {f"{p}readers", f"{p}dept_operations", f"{p}grp_approvers"}
    assert got[f"{p}carol"] == {f"{p}readers", f"{p}dept_risk", f"{p}grp_desk_heads", f"{p}grp_approvers"}
    assert f"{p}gina" not in got, "a leaver gets no group role"
    assert _role_comment(f"{p}grp_algo") is None, "the DBA's role is used, not taken over"
    assert (_role_comment(f"{p}grp_desk_heads") or "").startswith("provisioner:managed ")
    with pg.admin_connect() as conn:
        made = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (p + "grp_%",))}
    assert made == {f"{p}grp_algo", f"{p}grp_desk_heads", f"{p}grp_approvers"}, "no tmp- role, no collided role"
    errors = [n.message for t in plan.targets for n in t.notices if n.code == "identity"]
    assert any(f"'{p}grp_risk_desk'" in m and "risk desk" in m and "risk-desk" in m for m in errors), errors
    grant = next(c for c in plan.changes if c.role == f"{p}carol" and c.param("group") == f"{p}grp_approvers")
    assert ("from_group", ldap_ou.group_dn("approvers").lower()) in grant.reasons[0].attributes
    assert not setup.plan().has_changes

    # a hand grant, then movers between groups: alice leaves algo (the DBA's role) and joins
    # Desk Heads; carol leaves Desk Heads (a role provisioner made)
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}handmade"), sql.Identifier(f"{p}bob")))
    ldap_ou.modify(ldap_ou.group_dn("algo"), member=[bob])
    ldap_ou.modify(desk_heads, member=[alice])
    plan = setup.apply()
    got = memberships(p)
    # revoked although the DBA made grp_algo: provisioner granted this membership (its ledger,
    # issue 13), so it takes it back when no rule wants it, whoever created the group role
    assert got[f"{p}alice"] == {f"{p}readers", f"{p}dept_trading", f"{p}grp_desk_heads", f"{p}grp_approvers"}
    algo = [c for c in plan.changes if c.role == f"{p}alice" and c.param("group") == f"{p}grp_algo"]
    assert [(c.kind.value, c.reasons[0].rule) for c in algo] == [("revoke_membership", "lifecycle:mover")], algo
    assert _role_comment(f"{p}grp_algo") is None, "the DBA's role is still not taken over"
    assert got[f"{p}carol"] == {f"{p}readers", f"{p}dept_risk"}, "carol left Desk Heads and so approvers"
    assert got[f"{p}bob"] == {
        f"{p}readers", f"{p}dept_operations", f"{p}grp_approvers", f"{p}grp_algo", f"{p}handmade"
    }
    drift = {n.role for t in plan.targets for n in t.notices if n.code == "drift"}
    assert f"{p}bob" in drift and f"{p}alice" not in drift, drift  # bob's hand grant of handmade is drift
    assert not setup.plan().has_changes
