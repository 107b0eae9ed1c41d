"""Safety checks on a finished plan, before any statement runs.

Every violation is reported at once; a non-empty result means nothing is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from provisioner.core.ownership.ledger import INSTANCE_CHANGED, SOURCE_RENAMED
from provisioner.core.ownership.policy import DiffPolicy, is_protected
from provisioner.core.reconcile.escalation import escalated_leaver
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Change, ChangeKind, Plan

SafetyCheck = Callable[[Plan, Mapping[str, ActualState], Mapping[str, DiffPolicy]], list[str]]


@dataclass(frozen=True, slots=True)
class SafetyContext:
    actual: Mapping[str, ActualState]
    policies: Mapping[str, DiffPolicy]


def protected_untouched(
    plan: Plan, actual: Mapping[str, ActualState], policies: Mapping[str, DiffPolicy]
) -> list[str]:
    """No change may name a protected role, neither as subject nor as granted group."""
    problems = []
    for tp in plan.targets:
        state = actual.get(tp.target)
        policy = policies.get(tp.target, DiffPolicy())
        if state is None:
            continue
        for change in tp.changes:
            names = [change.role]
            if change.kind in (ChangeKind.GRANT_MEMBERSHIP,):
                names.append(str(change.param("group")))
            if change.kind is ChangeKind.RENAME_ROLE:
                names.append(str(change.param("old_name")))
            for name in names:
                role = state.roles.get(name)
                if _leaver_revoke(change, name, state, policy):
                    continue
                if role is not None and is_protected(role, state, policy):
                    problems.append(f"{tp.target}: '{change.describe()}' touches protected role {name!r}")
    return problems


def _leaver_revoke(change: Change, name: str, state: ActualState, policy: DiffPolicy) -> bool:
    """Revoking a membership from a managed login role made SUPERUSER (etc.) by
    hand: the part of disabling a leaver provisioner can still do."""
    role = state.roles.get(name)
    return (
        change.kind is ChangeKind.REVOKE_MEMBERSHIP
        and name == change.role
        and role is not None
        and escalated_leaver(role, state, policy)
    )


def installation_unchanged(
    plan: Plan, actual: Mapping[str, ActualState], policies: Mapping[str, DiffPolicy]
) -> list[str]:
    """Nothing is applied while this installation's own roles carry an older installation
    or source name (core/ownership/ledger.py: renamed_ownership): a run would mark its joiners
    with the new name and leave the old name's leavers enabled."""
    return [n.message for tp in plan.targets for n in tp.notices if n.code in (INSTANCE_CHANGED, SOURCE_RENAMED)]


CHECKS: list[SafetyCheck] = [protected_untouched, installation_unchanged]
"""Registered checks; features append theirs (breaker, SoD ...)."""


def check_plan(
    plan: Plan, actual: Mapping[str, ActualState], policies: Mapping[str, DiffPolicy]
) -> list[str]:
    out: list[str] = []
    for check in CHECKS:
        out += check(plan, actual, policies)
    return out
