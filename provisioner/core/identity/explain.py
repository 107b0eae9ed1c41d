"""Why does an identity get (or not get) each role?  Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from provisioner.core.identity.conditions import (
    AllCondition,
    AnyCondition,
    AttrCondition,
    Condition,
    GroupCondition,
    evaluate,
)
from provisioner.core.identity.lifecycle import LifecyclePolicy, classify, local_date
from provisioner.core.identity.rules import RuleSet, render
from provisioner.core.values.model import Identity, Lifecycle, Reason


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    rule_id: str
    description: str
    where: str
    matched: bool
    evidence: tuple[tuple[str, str], ...]
    roles: tuple[str, ...]
    failed: str = ""
    """For a rule that does not match: its first condition that fails, with the values seen."""


@dataclass(frozen=True, slots=True)
class Explanation:
    identity: Identity
    lifecycle: Lifecycle
    lifecycle_reason: Reason
    verdicts: tuple[RuleVerdict, ...]

    @property
    def roles(self) -> dict[str, list[str]]:
        """Role -> rule ids granting it (empty unless the identity is active)."""
        out: dict[str, list[str]] = {}
        if self.lifecycle is not Lifecycle.ACTIVE:
            return out
        for v in self.verdicts:
            if v.matched:
                for role in v.roles:
                    out.setdefault(role, []).append(v.rule_id)
        return out


def explain(ident: Identity, rules: RuleSet, lifecycle: LifecyclePolicy, now: datetime) -> Explanation:
    state, why, _ = classify(ident, now, lifecycle)
    verdicts = []
    for rule in rules.rules:
        ok, evidence = evaluate(rule.when, ident, local_date(now, lifecycle.zone))
        failed = "" if ok else first_failure(rule.when, ident, local_date(now, lifecycle.zone))
        if not rule.enabled:
            ok, failed = False, "the rule is disabled (enabled = false)"
        roles = tuple(r for t in rule.grants for r in render(t, ident, rule.groups)) if ok else rule.grants
        verdicts.append(RuleVerdict(rule.id, rule.description, rule.where, ok, evidence, roles, failed))
    return Explanation(ident, state, why, tuple(verdicts))


def first_failure(cond: Condition, ident: Identity, today: date) -> str:
    """The first condition inside ``cond`` that is false for ``ident``, in words."""
    if isinstance(cond, AttrCondition):
        values = ident.attributes.get(cond.attr, ())
        seen = f"has {' | '.join(repr(v) for v in values)}" if values else "has no value"
        shown = cond.value.pattern if isinstance(cond.value, re.Pattern) else cond.value
        return f"{cond.attr} {cond.op} {shown!r} ({seen})"
    if isinstance(cond, GroupCondition):
        return f"not in group {cond.group!r} (directly or nested)"
    if isinstance(cond, AllCondition):
        for item in cond.items:
            if not evaluate(item, ident, today)[0]:
                return first_failure(item, ident, today)
        return "all"  # unreachable for a failing condition
    if isinstance(cond, AnyCondition):
        return "none of: " + "; ".join(first_failure(item, ident, today) for item in cond.items)
    _, evidence = evaluate(cond.item, ident, today)
    shown = ", ".join(f"{k}={v!r}" for k, v in evidence)
    return f"not (...) is false: the inner condition matched ({shown or 'true'})"
