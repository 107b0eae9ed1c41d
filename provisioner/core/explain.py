"""Why does an identity get (or not get) each role?  Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from provisioner.core.conditions import evaluate
from provisioner.core.lifecycle import LifecyclePolicy, classify
from provisioner.core.model import Identity, Lifecycle, Reason
from provisioner.core.rules import RuleSet, render


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    rule_id: str
    description: str
    where: str
    matched: bool
    evidence: tuple[tuple[str, str], ...]
    roles: tuple[str, ...]


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
        ok, evidence = evaluate(rule.when, ident, now.date())
        ok = ok and rule.enabled
        roles = tuple(r for t in rule.grants for r in render(t, ident, rule.groups)) if ok else rule.grants
        verdicts.append(RuleVerdict(rule.id, rule.description, rule.where, ok, evidence, roles))
    return Explanation(ident, state, why, tuple(verdicts))
