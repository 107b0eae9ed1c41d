"""Ownership (issue 13) against real slapd and PostgreSQL, in the brownfield situation:
the business roles exist before provisioner runs, created by the DBAs without a
marker, and the rules only decide who is a member.

* a mover loses exactly what provisioner granted, in roles it did not create;
* a hand grant is drift (never a mover), reported in every plan, revoked only with
  drift = "revoke", never in a break-glass role;
* a reused username never inherits the leaver's role;
* two installations on one server never touch each other's roles; old markers are
  upgraded in place by the first run.
"""

from __future__ import annotations

import json
from pathlib import Path

from psycopg import sql

from provisioner.core.values import marker as markers
from provisioner.core.values.plan import ChangeKind, Plan, digest
from tests.cli.test_cli import run
from tests.lifecycle.support import access, applied_changes, audit_kinds, person
from tests.support import pg
from tests.support.config import pin_instance
from tests.support.e2e import RELAXED_SAFETY, Setup, make_setup
from tests.support.fixtures import LdapOu

BUSINESS = ("desk_equities_trader", "market_data_reader", "compliance_reader", "trade_approver")

RULES = """
[[rule]]
id = "equities"
description = "equities desk trades and reads market data"
grant = ["{p}desk_equities_trader", "{p}market_data_reader"]
when = {{ attr = "department", equals = "Equities" }}

[[rule]]
id = "compliance"
description = "compliance reads"
grant = ["{p}compliance_reader"]
when = {{ attr = "department", equals = "Compliance" }}

[[rule]]
id = "research"
description = "research reader, a role provisioner creates"
grant = ["{p}research_reader"]
when = {{ attr = "title", equals = "Analyst" }}
"""


def business_roles(prefix: str) -> None:
    """The DBAs' roles, created before provisioner is deployed: no marker."""
    with pg.admin_connect() as conn:
        for name in BUSINESS:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(prefix + name)))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(prefix + "desk_equities_trader"), sql.Literal("equities desk, owned by the DBA team")
            )
        )


def brownfield(tmp_path: Path, ldap_ou: LdapOu, p: str, drift: str = "report", extra: str = "") -> Setup:
    business_roles(p)
    src = ldap_ou.config(name=f"{p}src")
    return make_setup(tmp_path, src, p, rules=RULES, drift=drift, extra=RELAXED_SAFETY + extra)


def hand_grant(group: str, member: str) -> None:
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member)))


def comment(role: str) -> str | None:
    with pg.admin_connect() as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
    assert row is not None, role
    return None if row[0] is None else str(row[0])


def changes_of(plan: Plan, role: str) -> list[tuple[ChangeKind, str | None, str]]:
    return [(c.kind, c.param("group"), c.reasons[0].rule) for c in plan.changes if c.role == role]


def notices_of(plan: Plan, code: str) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.code == code]


def test_mover_loses_the_business_roles_provisioner_granted(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    s = brownfield(tmp_path, ldap_ou, p)
    dn = ldap_ou.add_user("ann", **person("Equities", "Trader"))
    s.apply()
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}desk_equities_trader", f"{p}market_data_reader"}))
    m = markers.parse(comment(f"{p}ann"))
    assert m is not None and m.granted == {f"{p}desk_equities_trader", f"{p}market_data_reader"}
    assert comment(f"{p}desk_equities_trader") == "equities desk, owned by the DBA team", "a DBA role is never marked"

    ldap_ou.modify(dn, departmentNumber="Compliance")  # ann moves to Compliance
    plan = s.apply()
    assert sorted(changes_of(plan, f"{p}ann")) == sorted(
        [
            (ChangeKind.REVOKE_MEMBERSHIP, f"{p}desk_equities_trader", "lifecycle:mover"),
            (ChangeKind.REVOKE_MEMBERSHIP, f"{p}market_data_reader", "lifecycle:mover"),
            (ChangeKind.GRANT_MEMBERSHIP, f"{p}compliance_reader", "compliance"),
        ]
    )
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}compliance_reader"})), "a compliance officer who can trade"
    m = markers.parse(comment(f"{p}ann"))
    assert m is not None and m.granted == {f"{p}compliance_reader"}
    assert not s.plan().has_changes
    assert comment(f"{p}desk_equities_trader") == "equities desk, owned by the DBA team"


def test_hand_grant_is_drift_reported_every_plan_never_a_mover(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    s = brownfield(tmp_path, ldap_ou, p)
    ldap_ou.add_user("bob", **person("Equities", "Analyst"))
    s.apply()
    # research_reader was created by provisioner (marked); both hand grants come from a DBA
    assert markers.parse(comment(f"{p}research_reader")) is not None
    ldap_ou.modify(ldap_ou.user_dn("bob"), title="Trader")  # no longer wants research_reader
    plan = s.apply()
    assert changes_of(plan, f"{p}bob") == [(ChangeKind.REVOKE_MEMBERSHIP, f"{p}research_reader", "lifecycle:mover")]
    hand_grant(f"{p}research_reader", f"{p}bob")  # in a role provisioner created
    hand_grant(f"{p}compliance_reader", f"{p}bob")  # in a DBA's catalog role
    for _ in range(2):  # reported in every plan, never planned as a change
        plan = s.plan()
        assert changes_of(plan, f"{p}bob") == []
        drift = notices_of(plan, "drift")
        assert any(repr(f"{p}research_reader") in d for d in drift), drift
        assert any(repr(f"{p}compliance_reader") in d for d in drift), drift
    s.apply()
    assert access(p)[f"{p}bob"][1] == {
        f"{p}desk_equities_trader",
        f"{p}market_data_reader",
        f"{p}research_reader",
        f"{p}compliance_reader",
    }, "drift = report keeps hand grants"

    # drift = "revoke": revoked, labelled drift (never lifecycle:mover); the ledger stays exact
    text = s.path.read_text().replace('drift = "report"', 'drift = "revoke"')
    s.path.write_text(text)
    plan = s.apply()
    assert sorted(changes_of(plan, f"{p}bob")) == [
        (ChangeKind.REVOKE_MEMBERSHIP, f"{p}compliance_reader", "drift"),
        (ChangeKind.REVOKE_MEMBERSHIP, f"{p}research_reader", "drift"),
    ]
    assert access(p)[f"{p}bob"][1] == {f"{p}desk_equities_trader", f"{p}market_data_reader"}
    assert not s.plan().has_changes


def test_drift_in_break_glass_role_is_reported_never_revoked(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    glass = f"{p}trade_approver"
    s = brownfield(tmp_path, ldap_ou, p, drift="revoke", extra=f'\n[lifecycle]\nbreak_glass = ["{glass}"]\n')
    ldap_ou.add_user("cy", **person("Equities", "Trader"))
    s.apply()
    hand_grant(glass, f"{p}cy")
    plan = s.plan()
    assert changes_of(plan, f"{p}cy") == []
    assert any("break-glass" in d and repr(glass) in d for d in notices_of(plan, "drift"))
    s.apply()
    assert glass in access(p)[f"{p}cy"][1]


def test_reused_username_never_inherits_the_leavers_role(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    s = brownfield(tmp_path, ldap_ou, p)
    dn = ldap_ou.add_user("alice", **person("Equities", "Trader"))
    s.apply()
    old = markers.parse(comment(f"{p}alice"))
    assert old is not None and old.stable_id
    ldap_ou.delete(dn)  # alice leaves; a new person gets uid alice (a new entryUUID)
    ldap_ou.add_user("alice", **person("Compliance", "Officer"))
    plan = s.apply()
    alice = changes_of(plan, f"{p}alice")
    assert (ChangeKind.ALTER_ROLE, None, "lifecycle:leaver") in alice
    assert {g for k, g, _ in alice if k is ChangeKind.REVOKE_MEMBERSHIP} == {
        f"{p}desk_equities_trader",
        f"{p}market_data_reader",
    }
    assert not any(k is ChangeKind.GRANT_MEMBERSHIP for k, _, _ in alice), "the newcomer gets nothing of hers"
    rejected = notices_of(plan, "conflict")
    assert any(old.stable_id in n and "rejected" in n for n in rejected), rejected
    assert access(p)[f"{p}alice"] == (False, frozenset())
    again = markers.parse(comment(f"{p}alice"))
    assert again is not None and again.stable_id == old.stable_id, "the role stays the leaver's"
    follow = s.plan()
    assert not follow.has_changes and notices_of(follow, "conflict"), "still reported, never handed over"


def entry_uuid(ou: LdapOu, dn: str) -> str:
    conn = ou.server.admin()
    try:
        assert conn.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["entryUUID"])
        return str(conn.entries[0].entryUUID.value)
    finally:
        conn.unbind()


def named(setup: Setup, instance: str) -> Setup:
    pin_instance(setup.path, instance)
    return setup


def test_two_installations_never_touch_each_others_roles(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    business_roles(p)
    other_ou = LdapOu(ldap_ou.server)
    source = f"{p}corp"  # both teams named their source alike
    old_dn = ldap_ou.add_user("old", **person("Equities", "Trader"))
    legacy = {"kind": "user", "id": entry_uuid(ldap_ou, old_dn), "source": source}  # an older version's marker
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}old")))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(f"{p}old"), sql.Literal(markers.PREFIX + json.dumps(legacy))
            )
        )
        for group in ("market_data_reader", "compliance_reader"):  # the second by hand: drift
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(p + group), sql.Identifier(f"{p}old")))
    ldap_ou.add_user("ann", **person("Equities", "Trader"))
    other_ou.add_user("zed", **person("Compliance", "Officer"))
    a = named(make_setup(tmp_path / "a", ldap_ou.config(name=source), p, rules=RULES), "team-a")
    b = named(make_setup(tmp_path / "b", other_ou.config(name=source), f"{p}b_", rules=RULES), "team-b")

    plan = a.apply()  # the first run upgrades the old marker in place
    old = markers.parse(comment(f"{p}old"))
    assert old is not None and old.instance == "team-a" and old.stable_id == legacy["id"]
    assert old.granted == {f"{p}market_data_reader", f"{p}desk_equities_trader"}, "hand grant not adopted"
    assert access(p)[f"{p}old"] == (
        True,
        frozenset({f"{p}market_data_reader", f"{p}desk_equities_trader", f"{p}compliance_reader"}),
    )
    assert markers.parse(comment(f"{p}ann")) is not None and markers.parse(comment(f"{p}ann")).instance == "team-a"
    assert not any("'team-b'" in n for n in notices_of(plan, "foreign"))  # B has not run yet

    before = access(p)
    plan = b.apply()  # team B: same source name, other people
    assert plan.changes and all(c.role.startswith(f"{p}b_") for c in plan.changes), plan.changes
    foreign = notices_of(plan, "foreign")
    assert len(foreign) == 1 and "'team-a'" in foreign[0], foreign
    after = access(p)
    for role in (f"{p}old", f"{p}ann"):
        assert after[role] == before[role], f"{role} changed by the other installation"
    assert after[f"{p}b_zed"] == (True, frozenset({f"{p}b_compliance_reader"}))

    for setup, other in ((a, "team-b"), (b, "team-a")):
        follow = setup.plan()
        assert not follow.has_changes, follow.changes
        assert any(f"'{other}'" in n for n in notices_of(follow, "foreign"))


def _change(kind: str, role: str, summary: str, **params: object) -> dict[str, object]:
    return {
        "kind": kind,
        "role": role,
        "params": params,
        "reasons": [{"rule": "equities", "text": "looks legitimate", "attributes": {}}],
        "before": {},
        "after": {},
        "summary": summary,
    }


def test_edited_saved_plan_is_refused_naming_each_change(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    s = brownfield(tmp_path, ldap_ou, p)
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dba_jane")))  # a DBA's own login
    ldap_ou.add_user("ivy", **person("Compliance", "Intern"))
    s.apply()
    ldap_ou.add_user("bea", **person("Equities", "Trader"))  # the reviewed change: bea joins
    saved = tmp_path / "plan.json"
    res = run("plan", "-c", str(s.path), "--format", "json", "--out", str(saved))
    assert res.returncode == 0, res.stderr
    data = json.loads(saved.read_text())
    data["targets"][0]["changes"] += [
        _change("grant_membership", f"{p}ivy", "grant", group=f"{p}desk_equities_trader"),
        _change("create_role", f"{p}backdoor", "create", role_kind="user", login=True, valid_until=None, marker=None),
        _change("drop_role", f"{p}dba_jane", "drop"),
    ]
    data.pop("plan_digest")
    data["plan_digest"] = digest(data)  # anyone can recompute it
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))

    res = run("apply", "-c", str(s.path), "--plan", str(edited), "--reason", "CHG-42")
    assert res.returncode != 0
    for needle in (
        f"grant {p}desk_equities_trader to {p}ivy",
        f"create role {p}backdoor",
        f"drop role {p}dba_jane",
    ):
        assert needle in res.stderr, res.stderr
    now = access(p)
    assert f"{p}backdoor" not in now and f"{p}dba_jane" in now and f"{p}bea" not in now, "nothing applied"
    assert now[f"{p}ivy"][1] == {f"{p}compliance_reader"}

    res = run("apply", "-c", str(s.path), "--plan", str(saved), "--reason", "CHG-42")  # the reviewed plan itself applies
    assert res.returncode == 0, res.stderr
    assert access(p)[f"{p}bea"] == (True, frozenset({f"{p}desk_equities_trader", f"{p}market_data_reader"}))


def test_signed_saved_plan_edit_is_named_as_an_edit(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    key = tmp_path / "audit-key.pem"
    assert run("audit", "keygen", "--out", str(key)).returncode == 0
    s = brownfield(tmp_path, ldap_ou, p, extra=f'\n[audit]\nsigning_key = "file:{key}"\n')
    ldap_ou.add_user("bea", **person("Equities", "Trader"))
    saved = tmp_path / "plan.json"
    assert run("plan", "-c", str(s.path), "--out", str(saved)).returncode == 0
    data = json.loads(saved.read_text())
    assert data["signature"]["value"]
    for change in data["targets"][0]["changes"]:
        change["reasons"] = [{"rule": "equities", "text": "approved by the desk head", "attributes": {}}]
    data.pop("plan_digest")
    data["plan_digest"] = digest({k: v for k, v in data.items() if k != "signature"})
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    res = run("apply", "-c", str(s.path), "--plan", str(edited), "--reason", "CHG-42")
    assert res.returncode != 0 and "edited after it was signed" in res.stderr, res.stderr
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    edited.write_text(json.dumps(unsigned))
    res = run("apply", "-c", str(s.path), "--plan", str(edited), "--reason", "CHG-42")
    assert res.returncode != 0 and "not signed" in res.stderr, res.stderr
    assert f"{p}bea" not in access(p)
    res = run("apply", "-c", str(s.path), "--plan", str(saved), "--reason", "CHG-42")
    assert res.returncode == 0, res.stderr
    assert access(p)[f"{p}bea"][0]


APPROVERS = """
[[rule]]
id = "approvers"
description = "members of the approvers group approve trades"
grant = ["{p}trade_approver"]
when = {{ group = "GROUP" }}
"""


def test_ambiguous_group_cn_is_a_plan_error_naming_both_dns(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    business_roles(p)
    ann = ldap_ou.add_user("ann", **person("Equities", "Trader"))
    ivy = ldap_ou.add_user("ivy", **person("Equities", "Intern"))
    real = ldap_ou.add_group("trade-approvers", [ann])
    s = make_setup(
        tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES + APPROVERS.replace("GROUP", "Trade-Approvers")
    )
    s.apply()
    assert f"{p}trade_approver" in access(p)[f"{p}ann"][1]

    sandbox = f"ou=sandbox,{ldap_ou.groups}"
    ldap_ou.add(
        [
            (sandbox, {"objectClass": "organizationalUnit", "ou": "sandbox"}),
            (f"cn=trade-approvers,{sandbox}", {"objectClass": "groupOfNames", "cn": "trade-approvers", "member": [ivy]}),
            (  # a second cn value reusing the name
                f"cn=lab,{sandbox}",
                {"objectClass": "groupOfNames", "cn": ["lab", "Trade-Approvers"], "member": [ivy]},
            ),
        ]
    )
    plan = s.apply()
    errors = [n.message for t in plan.targets for n in t.notices if n.level.value == "error"]
    assert any(
        real.lower() in e.lower() and f"cn=trade-approvers,{sandbox}".lower() in e.lower() and f"cn=lab,{sandbox}".lower() in e.lower()
        for e in errors
    ), errors
    now = access(p)
    assert f"{p}trade_approver" not in now[f"{p}ivy"][1], "a sandbox group granted trade_approver"
    assert f"{p}trade_approver" in now[f"{p}ann"][1], "the real approvers keep their access meanwhile"

    rules = tmp_path / "mappings" / "rules" / "r.toml"  # the rule names the group by DN: unambiguous
    rules.write_text((RULES + APPROVERS.replace("GROUP", real.upper().replace(",", ", "))).format(p=p))
    plan = s.apply()
    assert not [n for t in plan.targets for n in t.notices if n.level.value == "error"]
    now = access(p)
    assert f"{p}trade_approver" in now[f"{p}ann"][1] and f"{p}trade_approver" not in now[f"{p}ivy"][1]
    assert not s.plan().has_changes


def test_adopt_records_a_hand_grant_in_the_ledger_audited(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    s = brownfield(tmp_path, ldap_ou, p)
    ldap_ou.add_user("dot", **person("Equities", "Trader"))
    s.apply()
    hand_grant(f"{p}compliance_reader", f"{p}dot")  # e.g. granted before provisioner was deployed
    assert any(repr(f"{p}compliance_reader") in d for d in notices_of(s.plan(), "drift"))

    cfg = str(s.path)
    res = run("adopt", "-c", cfg, "--target", "pg", "--role", f"{p}dot", "--group", f"{p}trade_approver", "--reason", "x")
    assert res.returncode != 0 and "not a member" in res.stderr, res.stderr
    res = run("adopt", "-c", cfg, "--target", "pg", "--role", f"{p}dot", "--group", f"{p}compliance_reader")
    assert res.returncode != 0, "--reason is required"
    res = run(
        "adopt", "-c", cfg, "--target", "pg", "--role", f"{p}dot", "--group", f"{p}compliance_reader",
        "--reason", "CHG-4711 pre-existing grant confirmed by the desk head",
    )
    assert res.returncode == 0, res.stderr
    m = markers.parse(comment(f"{p}dot"))
    assert m is not None and f"{p}compliance_reader" in (m.granted or ())
    adopted = [c for c in applied_changes(s) if c["role"] == f"{p}dot" and c["kind"] == "set_marker"]
    assert adopted and "CHG-4711" in adopted[-1]["reasons"][0]["text"]
    assert ("override", f"{p}dot") in audit_kinds(s)

    plan = s.apply()  # now provisioner's own grant: no rule wants it, so it goes (a mover)
    assert changes_of(plan, f"{p}dot") == [(ChangeKind.REVOKE_MEMBERSHIP, f"{p}compliance_reader", "lifecycle:mover")]
    assert access(p)[f"{p}dot"][1] == {f"{p}desk_equities_trader", f"{p}market_data_reader"}


def test_validate_shows_the_installation_name(tmp_path: Path) -> None:
    (tmp_path / "m" / "rules").mkdir(parents=True)
    (tmp_path / "m" / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "r"\ndescription = "d"\ngrant = ["g"]\nwhen = { attr = "department", equals = "y" }\n'
    )
    body = '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    cfg = tmp_path / "c.toml"
    cfg.write_text('[provisioner]\nmappings = "m"\n' + body)
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    derived = next(line for line in res.stdout.splitlines() if line.startswith("installation: "))
    assert derived.startswith("installation: auto-") and "derived" in derived
    assert run("validate", "-c", str(cfg)).stdout == res.stdout, "a derived name is stable"
    cfg.write_text('[provisioner]\nmappings = "m"\ninstance = "trading-prod"\n' + body)
    res = run("validate", "-c", str(cfg))
    assert "installation: trading-prod (configured)" in res.stdout, res.stdout
    cfg.write_text('[provisioner]\nmappings = "m"\ninstance = "bad name; --"\n' + body)
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 1 and "provisioner.instance" in res.stderr
