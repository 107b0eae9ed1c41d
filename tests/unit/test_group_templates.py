"""Roles templated from groups (``grp_{group}``) and the rule index: pure, no server."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

from provisioner.core.identity.conditions import evaluate
from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.explain import explain
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.identity.needs import referenced_attributes
from provisioner.core.identity.rules import RuleSet, build_ruleset
from provisioner.core.values.model import Identity, Reason, SourceSnapshot

TODAY = date(2026, 11, 26)
BASE = "ou=groups,dc=bench,dc=example"

TEMPLATED = """
[[rule]]
id = "ldap-groups"
description = "one NOLOGIN role per directory group under ou=groups"
grant = ["grp_{group}"]
groups = { under = "OU=Groups, dc=bench,dc=example", match = "(?!tmp-).*" }
when = { attr = "employee_type", one_of = ["full-time", "contractor"] }
"""


def _rules(text: str) -> RuleSet:
    rs, problems = build_ruleset([("mappings/rules/groups.toml", text)])
    assert problems == []
    return rs


def _person(sid: str, *groups: str, etype: str = "full-time") -> Identity:
    labels: set[str] = set()
    for g in groups:
        labels.add(g.lower())
        if "=" in g:
            labels.add(g.split(",", 1)[0].split("=", 1)[1].lower())  # the cn label, as sources add it
    return Identity(sid, sid, "ldap", {"employee_type": (etype,)}, frozenset(labels), dn=f"uid={sid},ou=people")


def test_group_placeholder_expands_admitted_groups_with_their_dn_as_evidence() -> None:
    rs = _rules(TEMPLATED)
    alice = _person(
        "alice",
        f"cn=Eq-Desk,{BASE}",
        f"cn=market data,{BASE}",
        f"cn=tmp-migration,{BASE}",  # refused by match
        "cn=eq-desk-old,ou=archive,dc=bench,dc=example",  # outside the subtree
    )
    grants = rs.grants_for(alice, TODAY)
    assert sorted(g.role for g in grants) == ["grp_eq_desk", "grp_market_data"]
    eq = next(g for g in grants if g.role == "grp_eq_desk")
    assert ("from_group", f"cn=eq-desk,{BASE}") in eq.reason.attributes
    assert ("employee_type", "full-time") in eq.reason.attributes
    assert rs.grants_for(_person("bob", f"cn=eq-desk,{BASE}", etype="intern"), TODAY) == []
    assert explain(alice, rs, LifecyclePolicy(), datetime(2026, 11, 26, tzinfo=UTC)).roles == {
        "grp_eq_desk": ["ldap-groups"],
        "grp_market_data": ["ldap-groups"],
    }
    assert "group" not in referenced_attributes(rs)  # {group} is not an attribute to read


def test_without_a_subtree_names_count_and_a_dn_and_its_cn_are_one_group() -> None:
    rs = _rules('[[rule]]\nid = "g"\ndescription = "d"\ngrant = "grp_{group}"\nwhen.attr = "employee_type"\nwhen.present = true\n')
    ident = _person("carol", f"cn=algo,{BASE}", "rates desk")  # a rule-test style bare name too
    grants = rs.grants_for(ident, TODAY)
    assert sorted((g.role, g.reason.attributes[-1]) for g in grants) == [
        ("grp_algo", ("from_group", f"cn=algo,{BASE}")),
        ("grp_rates_desk", ("from_group", "name:rates desk")),
    ]


def _desired(rs: RuleSet, people: list[Identity]):  # type: ignore[no-untyped-def]
    snap = SourceSnapshot("ldap", tuple(people))
    return desired_state([snap], rs, NamingPolicy(), LifecyclePolicy(), datetime(2026, 11, 26, tzinfo=UTC))


def test_two_groups_normalising_to_one_role_are_reported_and_held() -> None:
    rs = _rules(TEMPLATED)
    people = [
        _person("dave", f"cn=Risk Desk,{BASE}", f"cn=algo,{BASE}"),
        _person("erin", f"cn=risk-desk,{BASE}"),
        _person("fred", f"cn=algo,ou=emea,{BASE}"),  # same cn in a second subtree of ou=groups
    ]
    desired = _desired(rs, people)
    assert desired.held >= {"grp_risk_desk", "grp_algo"}
    problems = "\n".join(desired.problems)
    assert "grp_risk_desk" in problems and f"cn=risk desk,{BASE}" in problems and f"cn=risk-desk,{BASE}" in problems
    assert f"cn=algo,ou=emea,{BASE}" in problems


def test_groups_table_is_checked_and_names_file_and_line() -> None:
    _, problems = build_ruleset(
        [
            (
                "mappings/rules/bad.toml",
                '[[rule]]\nid = "a"\ndescription = "d"\ngrant = "x"\ngroups = { under = "ou=g" }\n'
                'when.attr = "title"\nwhen.present = true\n\n'
                '[[rule]]\nid = "b"\ndescription = "d"\ngrant = "grp_{group}"\ngroups = { match = "(", subtree = 1 }\n'
                'when.attr = "title"\nwhen.present = true\n',
            )
        ]
    )
    text = "\n".join(problems)
    assert "mappings/rules/bad.toml:1: rule 'a': 'groups' limits a {group} placeholder, but no grant uses {group}" in text
    assert "mappings/rules/bad.toml:9: rule 'b': unknown key(s) ['subtree']" in text
    assert "groups.match '(' is not a valid regular expression" in text


def _many_rules(n: int) -> str:
    out = []
    for i in range(n):
        out.append(
            f'[[rule]]\nid = "g{i}"\ndescription = "group {i}"\ngrant = "role_{i}"\n'
            f'when.all = [ {{ group = "grp-{i}" }}, {{ not = {{ attr = "status", equals = "suspended" }} }} ]\n'
        )
    out.append(
        '[[rule]]\nid = "dept"\ndescription = "d"\ngrant = "dept_{department}"\n'
        'when.attr = "department"\nwhen.one_of = ["Trading", "Risk"]\n'
    )
    out.append('[[rule]]\nid = "regex"\ndescription = "d"\ngrant = "quants"\nwhen.attr = "title"\nwhen.regex = "quant"\n')
    out.append(
        '[[rule]]\nid = "either"\ndescription = "d"\ngrant = "either"\n'
        'when.any = [ { group = "grp-3" }, { attr = "title", equals = "CEO", case_sensitive = true } ]\n'
    )
    return "\n".join(out)


def test_index_evaluates_only_rules_that_can_match_and_agrees_with_a_full_scan() -> None:
    rs = _rules(_many_rules(2000))
    rng = random.Random(7)
    people = []
    for i in range(300):
        groups = frozenset(f"grp-{rng.randrange(2000)}" for _ in range(rng.randrange(0, 30)))
        attrs = {
            "department": (rng.choice(["Trading", "trading", "Risk", "IT"]),),
            "title": (rng.choice(["Quant", "ceo", "CEO", "Analyst"]),),
            "status": (rng.choice(["active", "Suspended"]),),
        }
        people.append(Identity(f"p{i}", f"p{i}", "src", attrs, groups))
    for ident in people:
        full = {(r.id, role) for r in rs.rules if evaluate(r.when, ident, TODAY)[0] for role in r.grants}
        indexed = {(g.reason.rule, g.role.replace("dept_trading", "dept_{department}").replace(
            "dept_risk", "dept_{department}")) for g in rs.grants_for(ident, TODAY)}
        assert indexed == full
        candidates = rs.candidates(ident)
        # a candidate per group held (plus the rules without a trigger), never all 2,003
        assert len(candidates) <= len(ident.groups) + 3
        assert {r.id for r in candidates} >= {f"g{g.removeprefix('grp-')}" for g in ident.groups}


def test_first_rdn_value_unescapes_and_refuses_non_dns() -> None:
    from provisioner.core.identity.grouptemplate import first_rdn_value

    assert first_rdn_value("cn=eq-desk,ou=groups,dc=x") == "eq-desk"
    assert first_rdn_value("cn=a\\,b,ou=groups") == "a,b"
    assert first_rdn_value("cn=a\\2cb,ou=groups") == "a,b"
    assert first_rdn_value("cn=x+uid=y,ou=groups") == "x"
    assert first_rdn_value("traders") is None
    assert first_rdn_value("cn=,ou=groups") is None
    assert first_rdn_value("display name=x,y") is None


def test_shared_label_and_reason_caches_never_change_a_grant() -> None:
    """The grant memo shares group labels and reasons across identities (issue 19): every
    identity's grants equal those computed with no cache at all, in any order."""
    text = TEMPLATED + """
[[rule]]
id = "depts"
description = "a role per department and type"
grant = ["dept_{department}", "kind_{employee_type}_{department}", "everyone"]
when = { attr = "department", present = true }
"""
    rs = _rules(text)
    rng = random.Random(19)
    names = [f"cn=g{i},{BASE}" for i in range(12)] + ["cn=tmp-x," + BASE, "cn=other,ou=archive,dc=bench,dc=example"]
    people = []
    for i in range(200):
        p = _person(f"u{i}", *rng.sample(names, rng.randint(0, 5)), etype=rng.choice(["full-time", "contractor"]))
        depts = tuple(rng.sample(["Risk", "IT Ops", "trading"], rng.randint(0, 2)))
        people.append(Identity(p.stable_id, p.username, p.source, {**p.attributes, "department": depts}, p.groups))
    labels: dict[str, tuple[str | None, str]] = {}
    reasons: dict[tuple[str, tuple[tuple[str, str], ...]], Reason] = {}
    for p in people + people[::-1]:
        assert rs.grants_for(p, TODAY, labels, reasons) == rs.grants_for(p, TODAY)
