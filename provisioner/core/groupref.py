"""Which groups do the rules ask about?  Sources that cannot cheaply read every
group (Microsoft Entra ID) resolve membership for these names only."""

from __future__ import annotations

from provisioner.core.conditions import GroupCondition, leaves
from provisioner.core.rules import RuleSet


def referenced_groups(rules: RuleSet) -> frozenset[str]:
    """Lower-cased group names (or ids / DNs) of every group condition of every rule,
    disabled rules included (enabling one must not need a full resync)."""
    tests = (leaf for rule in rules.rules for leaf in leaves(rule.when))
    return frozenset(leaf.group.lower() for leaf in tests if isinstance(leaf, GroupCondition))
