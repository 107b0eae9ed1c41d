"""Memoised grants: what the rules give an identity depends only on the parts of
it the rules read (the attributes their conditions test and their grants expand,
the groups they name, the username when a grant expands ``{username}``) and on
the day (``before`` / ``after`` conditions).  Many identities share those parts
(same department, title and type), so one evaluation serves all of them; the
daemon keeps a :class:`GrantMemo` across runs, so unchanged people cost a lookup.

Pure: no I/O, a memo is a plain dictionary the shell may keep or drop.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date

from provisioner.core.conditions import AllCondition, AnyCondition, Condition, GroupCondition, NotCondition
from provisioner.core.model import Identity
from provisioner.core.needs import referenced_attributes
from provisioner.core.rules import Grant, RuleSet

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
MAX_ENTRIES = 500_000
"""The memo starts afresh beyond this many distinct keys (bounded memory)."""


@dataclass(frozen=True, slots=True)
class RuleInputs:
    """What of an identity a rule set reads."""

    attributes: tuple[str, ...]
    groups: tuple[str, ...]
    username: bool


def _groups(cond: Condition) -> set[str]:
    if isinstance(cond, GroupCondition):
        return {cond.group}
    if isinstance(cond, AllCondition | AnyCondition):
        return set().union(*(_groups(c) for c in cond.items))
    if isinstance(cond, NotCondition):
        return _groups(cond.item)
    return set()


def rule_inputs(rules: RuleSet) -> RuleInputs:
    attrs = referenced_attributes(rules, "")
    username = any("username" in _PLACEHOLDER.findall(t) for r in rules.rules for t in r.grants)
    groups: set[str] = set()
    for rule in rules.rules:
        groups |= _groups(rule.when)
    return RuleInputs(tuple(sorted(attrs)), tuple(sorted(groups)), username)


class GrantMemo:
    """``rules.grants_for(ident, today)`` memoised on :class:`RuleInputs` of ``ident``.

    Valid for one rule set and one day: either changing empties it."""

    def __init__(self) -> None:
        self._rules: RuleSet | None = None
        self._today: date | None = None
        self._inputs = RuleInputs((), (), False)
        self._memo: dict[Hashable, tuple[Grant, ...]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memo)

    def _reset(self, rules: RuleSet, today: date) -> None:
        self._rules, self._today = rules, today
        self._inputs = rule_inputs(rules)
        self._memo = {}

    def grants(self, rules: RuleSet, ident: Identity, today: date) -> tuple[Grant, ...]:
        if today != self._today or (rules is not self._rules and rules != self._rules):
            self._reset(rules, today)
        inputs = self._inputs
        get = ident.attributes.get
        groups = ident.groups
        key = (
            tuple([get(a, ()) for a in inputs.attributes]),
            tuple([g in groups for g in inputs.groups]),
            ident.username if inputs.username else None,
        )
        found = self._memo.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        if len(self._memo) >= MAX_ENTRIES:
            self._memo = {}
        grants = tuple(rules.grants_for(ident, today))
        self._memo[key] = grants
        return grants
