"""What the rules read: the one computation behind the grant memo's key
(core/identity/memo.py), the attributes sources are asked for (core/identity/needs.py),
the groups sources resolve (core/identity/groupref.py) and validation's warnings.

Every rule counts, enabled or not: enabling one must not need a full resync.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.core.identity.conditions import AttrCondition, GroupCondition, leaves
from provisioner.core.identity.placeholders import GROUP, USERNAME, placeholders
from provisioner.core.identity.rules import RuleSet


@dataclass(frozen=True, slots=True)
class RuleReads:
    attributes: frozenset[str]
    """Lower-cased canonical attributes a condition tests or a grant expands (``{username}``
    included, ``{group}`` not)."""
    groups: frozenset[str]
    """Lower-cased group names (or ids / DNs) of every group condition."""
    username: bool
    """A grant expands ``{username}``."""
    all_groups: bool
    """A grant expands ``{group}``: every group of the identity matters."""


def rule_reads(rules: RuleSet) -> RuleReads:
    attributes: set[str] = set()
    groups: set[str] = set()
    expanded: set[str] = set()
    for rule in rules.rules:
        for leaf in leaves(rule.when):
            if isinstance(leaf, AttrCondition):
                attributes.add(leaf.attr)
            elif isinstance(leaf, GroupCondition):
                groups.add(leaf.group.lower())
        for template in rule.grants:
            expanded.update(placeholders(template))
    attributes |= expanded - {GROUP}
    return RuleReads(
        frozenset(a.lower() for a in attributes), frozenset(groups), USERNAME in expanded, GROUP in expanded
    )


def template_attributes(template: str) -> frozenset[str]:
    """The attributes a naming template reads (``{group}`` is no attribute)."""
    return frozenset(n.lower() for n in placeholders(template) if n != GROUP)
