"""Which groups do the rules ask about?  Sources that cannot cheaply read every
group (Microsoft Entra ID) resolve membership for these names only."""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.core.identity.conditions import GroupCondition, leaves
from provisioner.core.identity.placeholders import is_template
from provisioner.core.identity.reads import rule_reads
from provisioner.core.identity.rules import RuleSet
from provisioner.core.values.model import SourceSnapshot


def referenced_groups(rules: RuleSet) -> frozenset[str]:
    """Lower-cased group names (or ids / DNs) of every group condition of every rule,
    disabled rules included (enabling one must not need a full resync)."""
    return rule_reads(rules).groups


def ambiguous_rules(rules: RuleSet, snapshots: Iterable[SourceSnapshot]) -> tuple[tuple[str, ...], frozenset[str]]:
    """Rules whose group condition names a group by a cn that several groups carry: one
    problem per rule and name, naming every DN, and the roles those rules grant, which are
    neither granted nor revoked until the rule names the group by DN (a sandbox group reusing
    a cn must never grant, and must not take the real group's members' access either)."""
    problems: list[str] = []
    frozen: set[str] = set()
    snaps = list(snapshots)
    for rule in rules.rules:
        for leaf in leaves(rule.when):
            if not isinstance(leaf, GroupCondition):
                continue
            for snap in snaps:
                dns = snap.ambiguous_groups.get(leaf.group)
                if not dns:
                    continue
                problems.append(
                    f"{rule.where}: rule {rule.id!r}: group {leaf.group!r} is ambiguous in source {snap.source}: "
                    f"{len(dns)} groups carry that name ({'; '.join(dns)}); "
                    "name the group by its DN (Entra ID: object id). "
                    f"Memberships of {', '.join(rule.grants)} are neither granted nor revoked until then"
                )
                frozen.update(g for g in rule.grants if not is_template(g))
    return tuple(problems), frozenset(frozen)
