"""The architecture in miniature: one call per stage.

    sources -> identities -> rules -> desired state
    targets -> actual state
    diff -> plan -> safety checks -> apply -> verify -> audit

``plan_run`` and ``apply_run`` share every step up to execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from provisioner.config import Config
from provisioner.core.desired import desired_state
from provisioner.core.diff import DiffPolicy, diff
from provisioner.core.groupref import referenced_groups
from provisioner.core.lifecycle import LifecyclePolicy
from provisioner.core.model import ActualState, DesiredState, SourceSnapshot
from provisioner.core.naming import NamingPolicy
from provisioner.core.needs import source_needs
from provisioner.core.plan import Plan, TargetPlan, execution_order
from provisioner.core.privdiff import PrivilegePolicy, plan_privileges
from provisioner.core.privileges import EMPTY, PrivilegeCatalog
from provisioner.core.safety import check_plan
from provisioner.errors import SafetyViolation
from provisioner.mappings import Mappings, load_mappings
from provisioner.recovery import planned_event, recover_interrupted
from provisioner.runtime import RunContext, Targets, execute, read_sources, refuse_stale
from provisioner.segregation import enforce as enforce_sod


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    plan: Plan
    mappings: Mappings
    snapshots: tuple[SourceSnapshot, ...]
    desired: DesiredState
    actual: Mapping[str, ActualState]


def policies(cfg: Config) -> dict[str, DiffPolicy]:
    return {t.name: DiffPolicy(frozenset(t.protected_roles), t.drift) for t in cfg.targets}


def compute_desired(
    cfg: Config, mappings: Mappings, snaps: tuple[SourceSnapshot, ...], now: datetime
) -> DesiredState:
    naming = NamingPolicy(cfg.naming.template, cfg.naming.prefix, cfg.naming.max_bytes)
    lifecycle = LifecyclePolicy.from_statuses(cfg.lifecycle.terminated_statuses)
    return desired_state(snaps, mappings.rules, naming, lifecycle, now)


def make_plan(
    cfg: Config,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    ctx: RunContext,
    seen: int,
    privileges: PrivilegeCatalog = EMPTY,
) -> Plan:
    pols = policies(cfg)
    owners = {t.name: tuple(t.default_privileges_for) for t in cfg.targets}
    target_plans = []
    for name, state in actual.items():
        changes, notices = diff(desired, state, pols[name], ctx.now)
        more, more_notices = plan_privileges(privileges, state, PrivilegePolicy(pols[name], owners[name]), changes)
        changes, notices = execution_order((*changes, *more)), (*notices, *more_notices)
        target_plans.append(TargetPlan(name, state.fingerprint(), changes, notices))
    return Plan(
        created_at=ctx.now,
        config_digest=cfg.digest,
        targets=tuple(target_plans),
        identities_seen=seen,
        sources=tuple(sorted(desired.sources)),
        meta={"run_id": ctx.run_id, "actor": ctx.actor, "trigger": ctx.trigger},
    )


def plan_run(cfg: Config, ctx: RunContext, targets: Targets) -> PlanOutcome:
    mappings = load_mappings(cfg.mappings_dir)
    needs = source_needs(mappings.rules, cfg.naming.template)
    snapshots = read_sources(cfg, ctx, referenced_groups(mappings.rules), needs)
    desired = compute_desired(cfg, mappings, snapshots, ctx.now)
    actual = targets.inspect_all()
    plan = make_plan(cfg, desired, actual, ctx, sum(len(s.identities) for s in snapshots), mappings.privileges)
    plan, _violations = enforce_sod(cfg, mappings, plan, desired, actual, ctx)  # withheld grants, audited
    ctx.audit([planned_event(ctx, plan)])
    return PlanOutcome(plan, mappings, snapshots, desired, actual)


def safety(cfg: Config, plan: Plan, actual: Mapping[str, ActualState]) -> None:
    violations = check_plan(plan, actual, policies(cfg))
    if violations:
        raise SafetyViolation(violations)


def apply_run(cfg: Config, ctx: RunContext, targets: Targets, saved: Plan | None = None) -> Plan:
    recover_interrupted(cfg, ctx, targets)
    if saved is None:
        outcome = plan_run(cfg, ctx, targets)
        plan, actual = outcome.plan, outcome.actual
    else:
        actual = targets.inspect_all()
        ctx.audit([planned_event(ctx, saved, saved=True)])
        refuse_stale(saved, actual, cfg)
        plan = saved
    safety(cfg, plan, actual)
    execute(plan, targets, ctx)
    return plan
