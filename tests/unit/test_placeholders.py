"""One placeholder grammar and one "what the rules read" (issue 18): every module that reads,
expands or matches a ``{placeholder}`` uses core/identity/placeholders.py, and the grant memo's
key, the sources' attribute list, the groups sources resolve and validation all come from
core/identity/reads.py."""

from __future__ import annotations

import re
from pathlib import Path

from provisioner.core.identity.groupref import referenced_groups
from provisioner.core.identity.memo import rule_inputs
from provisioner.core.identity.needs import referenced_attributes, source_needs
from provisioner.core.identity.placeholders import is_template, matcher, placeholders, substitute
from provisioner.core.identity.reads import rule_reads
from provisioner.core.identity.rules import build_ruleset

ROOT = Path(__file__).resolve().parents[2]

RULES = """
[[rule]]
id = "desk"
description = "desk role per department"
grant = ["dept_{department}", "reader"]
when.all = [ { attr = "Title", regex = "trader" }, { group = "Approvers" } ]

[[rule]]
id = "groups"
description = "a role per group, and one per person"
grant = ["grp_{group}", "{username}_ro"]
when = { attr = "type", equals = "employee" }

[[rule]]
id = "off"
description = "disabled rules count: enabling one needs no resync"
enabled = false
grant = ["site_{location}"]
when = { group = "cn=Old,ou=groups,dc=example" }
"""


def test_the_grammar_is_defined_once() -> None:
    """No module of provisioner compiles its own placeholder pattern."""
    own = re.compile(r're\.compile\(r"\\\{')
    found = [p.relative_to(ROOT).as_posix() for p in (ROOT / "provisioner").rglob("*.py") if own.search(p.read_text())]
    assert found == ["provisioner/core/identity/placeholders.py"]


def test_the_grammar() -> None:
    assert placeholders("{prefix}x_{department}_{group}") == ["prefix", "department", "group"]
    assert is_template("dept_{department}") and not is_template("dept_trading") and not is_template("a{B}")
    assert substitute("{username}_ro", str.upper) == "USERNAME_ro"
    desk = matcher("dept_{department}")
    assert desk.fullmatch("DEPT_trading") and not desk.fullmatch("dept_")
    assert matcher("plain").fullmatch("plain") and not matcher("plain").fullmatch("plainer")


def test_what_the_rules_read_is_one_computation() -> None:
    rules, problems = build_ruleset([("r.toml", RULES)])
    assert problems == []
    reads = rule_reads(rules)
    assert reads.attributes == {"title", "department", "type", "username", "location"}
    assert reads.groups == {"approvers", "cn=old,ou=groups,dc=example"}
    assert reads.username and reads.all_groups
    # every consumer derives from it
    assert referenced_attributes(rules, "") == reads.attributes
    assert referenced_attributes(rules, "{username}_{employee_id}_{group}") == reads.attributes | {"employee_id"}
    assert referenced_groups(rules) == reads.groups
    inputs = rule_inputs(rules)
    assert frozenset(inputs.attributes) == reads.attributes and inputs.groups == reads.groups
    assert inputs.username and inputs.all_groups
    needs = source_needs(rules, "{username}")
    assert needs.attributes is not None and reads.attributes <= needs.attributes
