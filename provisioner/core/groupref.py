"""Which groups do the rules ask about?  Sources that cannot cheaply read every
group (Microsoft Entra ID) resolve membership for these names only."""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.core.conditions import (
    AllCondition,
    AnyCondition,
    AttrCondition,
    Condition,
    GroupCondition,
    NotCondition,
)
from provisioner.core.rules import RuleSet


def _walk(cond: Condition) -> Iterator[str]:
    if isinstance(cond, GroupCondition):
        yield cond.group
    elif isinstance(cond, AllCondition | AnyCondition):
        for item in cond.items:
            yield from _walk(item)
    elif isinstance(cond, NotCondition):
        yield from _walk(cond.item)
    else:
        assert isinstance(cond, AttrCondition)


def referenced_groups(rules: RuleSet) -> frozenset[str]:
    """Lower-cased group names (or ids / DNs) of every group condition of every rule,
    disabled rules included (enabling one must not need a full resync)."""
    return frozenset(name.lower() for rule in rules.rules for name in _walk(rule.when))
