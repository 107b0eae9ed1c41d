"""Rule parsing and evaluation: pure, no server."""

from __future__ import annotations

from datetime import date

import pytest

from provisioner.core.identity.rules import build_ruleset, render
from provisioner.core.values.model import Identity

TODAY = date(2026, 11, 26)


def ident(groups: tuple[str, ...] = (), **attrs: str) -> Identity:
    return Identity(
        "id-1", attrs.pop("username", "alice"), "src", {k: (v,) for k, v in attrs.items()}, frozenset(groups)
    )


def rules(text: str):  # type: ignore[no-untyped-def]
    rs, problems = build_ruleset([("mappings/rules/x.toml", text)])
    assert problems == []
    return rs


def test_all_any_not_and_evidence() -> None:
    rs = rules(
        """
[[rule]]
id = "r1"
description = "traders"
grant = ["trade_executor"]
when.all = [
  { attr = "department", equals = "trading" },
  { any = [ { attr = "title", regex = "trader" }, { group = "desk" } ] },
  { not = { attr = "employee_type", one_of = ["Contractor", "Intern"] } },
]
"""
    )
    grants = rs.grants_for(ident(department="Trading", title="FX Trader", employee_type="employee"), TODAY)
    assert [g.role for g in grants] == ["trade_executor"]
    assert grants[0].reason.rule == "r1"
    assert ("department", "Trading") in grants[0].reason.attributes
    assert ("title", "FX Trader") in grants[0].reason.attributes
    assert rs.roles_for(ident(department="Trading", title="FX Trader", employee_type="contractor"), TODAY) == set()
    assert rs.roles_for(ident(("desk",), department="Trading", title="Analyst", employee_type="employee"), TODAY) == {
        "trade_executor"
    }


def test_dates_relative_and_absolute() -> None:
    rs = rules(
        """
[[rule]]
id = "recent"
description = "hired in the last 30 days"
grant = "onboarding"
when.all = [ { attr = "hire_date", after = "today-30d" }, { attr = "hire_date", before = 2027-01-01 } ]
"""
    )
    assert rs.roles_for(ident(hire_date="2026-11-20"), TODAY) == {"onboarding"}
    assert rs.roles_for(ident(hire_date="2026-09-01"), TODAY) == set()
    assert rs.roles_for(ident(hire_date="not a date"), TODAY) == set()
    assert rs.roles_for(ident(), TODAY) == set()


def test_present_and_case_sensitive() -> None:
    rs = rules(
        """
[[rule]]
id = "m"
description = "has a manager"
grant = ["managed"]
when = { attr = "manager", present = true }

[[rule]]
id = "cs"
description = "exact"
grant = ["exact"]
when = { attr = "title", equals = "CEO", case_sensitive = true }
"""
    )
    assert rs.roles_for(ident(manager="cn=bob"), TODAY) == {"managed"}
    assert rs.roles_for(ident(title="ceo"), TODAY) == set()
    assert rs.roles_for(ident(title="CEO"), TODAY) == {"exact"}


def test_template_expands_every_value_and_normalises() -> None:
    i = Identity("x", "bob", "s", {"department": ("Trade Support", "Risk & Control")})
    assert sorted(render("dept_{department}", i)) == ["dept_risk_control", "dept_trade_support"]
    assert render("dept_{missing}", i) == []
    assert render('literal "Quoted"; role', i) == ['literal "Quoted"; role']


def test_every_problem_reported_with_file_and_line() -> None:
    text = """# header

[[rule]]
id = "ok"
description = "fine"
grant = ["a"]
when = { attr = "x", equals = "y" }

[[rule]]
id = "bad op"
grant = []
when = { attr = "x", equal = "y" }

[[rule]]
id = "bad-regex"
description = "d"
grant = ["pg_read_all_data"]
when = { attr = "x", regex = "(" }

[[rule]]
id = "ok"
description = "duplicate id"
grant = ["b"]
when = { group = "g" }
"""
    rs, problems = build_ruleset([("m/rules/f.toml", text)])
    joined = "\n".join(problems)
    assert "m/rules/f.toml:9: rule 'bad op': 'id' 'bad op' may hold only letters, digits" in joined
    assert "m/rules/f.toml:9: rule 'bad op': 'description' is required" in joined
    assert "m/rules/f.toml:9" in joined and "unknown key(s) ['equal']" in joined
    assert "m/rules/f.toml:14" in joined and "invalid regular expression" in joined
    assert "'pg_read_all_data' is a PostgreSQL system role" in joined
    assert "m/rules/f.toml:20: rule id 'ok' is already used at m/rules/f.toml:3" in joined


def test_toml_syntax_error_names_file_and_line() -> None:
    _, problems = build_ruleset([("m/rules/broken.toml", '[[rule]]\nid = "x\n')])
    assert len(problems) == 1
    assert problems[0].startswith("m/rules/broken.toml: not valid TOML")
    assert "line 2" in problems[0]


@pytest.mark.parametrize(
    "when, message",
    [
        ('{ attr = "x" }', "exactly one operator"),
        ("{ all = [] }", "non-empty list"),
        ('{ not = { group = "a" }, attr = "x" }', "cannot be combined"),
        ('{ attr = "d", before = "tomorrow" }', "must be a date"),
        ("{ foo = 1 }", "unknown condition"),
        ('"department"', "must be a table"),
    ],
)
def test_malformed_conditions(when: str, message: str) -> None:
    text = f'[[rule]]\nid = "r"\ndescription = "d"\ngrant = ["g"]\nwhen = {when}\n'
    _, problems = build_ruleset([("f.toml", text)])
    assert any(message in p for p in problems), problems
