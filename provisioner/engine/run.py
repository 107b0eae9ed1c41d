"""The architecture in miniature: one call per stage.

    sources -> identities -> rules -> desired state
    targets -> actual state
    diff -> plan -> safety checks -> apply -> verify -> audit

``plan_run`` makes the plan and returns it with what it found (audit records, SoD
violations) as values: planning writes nothing to the audit trail.  ``check`` is
"plan, then check safety", the one entry of the CLI's ``plan`` and ``apply`` and the
daemon.  ``apply_run`` hands the records over before anything is executed (or refused);
a plan's reach the store when the run recorder closes the run (engine/record.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from provisioner import unicode_data
from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent
from provisioner.core.governance.sodeval import Conflict
from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.exclusions import Exclusion, apply_exclusions
from provisioner.core.identity.exclusions import digest as exclusions_digest
from provisioner.core.identity.groupref import ambiguous_rules, referenced_groups
from provisioner.core.identity.lifecycle import LeaverPolicy, LifecyclePolicy, flatten_missing
from provisioner.core.identity.memo import GrantMemo
from provisioner.core.identity.naming import NamingPolicy, Scripts
from provisioner.core.identity.needs import source_needs
from provisioner.core.privileges.catalog import Catalog
from provisioner.core.privileges.dialect import for_target
from provisioner.core.privileges.diff import PrivilegePolicy, plan_privileges
from provisioner.core.privileges.drift import DriftPolicy, plan_privilege_drift
from provisioner.core.privileges.spec import EMPTY, PrivilegeCatalog
from provisioner.core.reconcile.breaker import BreakerTrip
from provisioner.core.reconcile.credentials import credential_notices
from provisioner.core.reconcile.diff import DiffPolicy, diff
from provisioner.core.reconcile.diffmemo import DiffMemo
from provisioner.core.reconcile.escalation import plan_escalations
from provisioner.core.reconcile.refusal import refuse_unworkable
from provisioner.core.reconcile.savedplan import contained
from provisioner.core.values.model import ActualState, DesiredState, SourceSnapshot
from provisioner.core.values.plan import Plan, TargetPlan, execution_order, plan_scope
from provisioner.engine import health, shortcircuit
from provisioner.engine.connections import Targets, raise_unread, read_sources
from provisioner.engine.context import RunContext
from provisioner.engine.execute import execute, refuse_stale
from provisioner.engine.gcpause import paused_gc
from provisioner.engine.health import Missing
from provisioner.engine.recovery import planned_event, recover_interrupted
from provisioner.engine.safety import Verdict, findings, refusal, verdict
from provisioner.engine.segregation import enforce as enforce_sod
from provisioner.engine.segregation import violation_events
from provisioner.errors import ApplyFailed, PlanError, ProvisionerError, RuleError, StalePlan
from provisioner.mappings import Mappings, load_mappings
from provisioner.review import exclusions as review_exclusions
from provisioner.validation import mapping_errors


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    plan: Plan
    mappings: Mappings
    snapshots: tuple[SourceSnapshot, ...]
    desired: DesiredState
    actual: Mapping[str, ActualState]
    missing: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Per source, managed stable ids missing from this read -> consecutive reads missing."""
    events: tuple[AuditEvent, ...] = ()
    """What planning found, for the audit trail, in order: a health-gate override, one
    ``violation`` per SoD conflict, ``run_planned``.  Nothing of it is written yet."""
    violations: tuple[Conflict, ...] = ()
    """The SoD conflicts whose grants the plan withholds."""


@dataclass(frozen=True, slots=True)
class Checked:
    """A plan and its safety verdict: what ``plan``, ``apply`` and the daemon act on."""

    outcome: PlanOutcome
    plan: Plan
    """What would be executed: the fresh plan, or the saved plan's changes it contains."""
    verdict: Verdict | None
    """None when a saved plan was refused before the checks (``refused`` says why)."""
    events: tuple[AuditEvent, ...]
    """The outcome's records, a saved plan's ``run_planned``, the breaker's records."""
    refused: ProvisionerError | None
    """Why the plan must not be applied (a value; the caller raises it), or None."""

    @property
    def violations(self) -> list[str]:
        return list(self.verdict.violations) if self.verdict else []

    @property
    def trips(self) -> list[BreakerTrip]:
        return list(self.verdict.trips) if self.verdict else []


def policies(
    cfg: Config, missing: Missing | None = None, drop_failures: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, DiffPolicy]:
    lc = cfg.lifecycle
    retention = timedelta(days=lc.retention_days) if lc.drop_after_retention else None
    flat = flatten_missing(missing or {})

    def leavers(target: str) -> LeaverPolicy:
        failures = (drop_failures or {}).get(target, {})
        return LeaverPolicy(lc.vanish_after_runs, flat, retention, lc.reassign_owned_to, failures)

    return {
        t.name: DiffPolicy(
            frozenset(t.protected_roles),
            t.drift,
            dict(t.drift_overrides),
            frozenset([*lc.break_glass, *t.break_glass]),
            leavers(t.name),
            cfg.instance,
        )
        for t in cfg.targets
    }


def lifecycle_policy(cfg: Config) -> LifecyclePolicy:
    """``[lifecycle]`` as the core's value (the time zone resolved from the tz database)."""
    lc = cfg.lifecycle
    leave_at = time.fromisoformat(lc.leave_at) if lc.leave_at else None
    return LifecyclePolicy.from_statuses(lc.terminated_statuses, ZoneInfo(lc.timezone), leave_at)


def compute_desired(
    cfg: Config,
    mappings: Mappings,
    snaps: tuple[SourceSnapshot, ...],
    now: datetime,
    exclusions: Sequence[Exclusion] = (),
    memo: GrantMemo | None = None,
    scripts: Scripts | None = None,
) -> DesiredState:
    """``exclusions``: access-review revokes of rule-based access in force (core/identity/exclusions.py);
    ``memo`` / ``scripts``: the daemon's grant memo and Unicode data (engine/warm.py), else fresh ones."""
    n = cfg.naming
    naming = NamingPolicy(n.template, n.prefix, n.max_bytes, n.charset, scripts or unicode_data.scripts())
    lifecycle = lifecycle_policy(cfg)
    with paused_gc():
        granted = frozenset(s.name for s in cfg.sources if s.login_for == "granted")
        grants = memo if memo is not None else GrantMemo()
        desired = desired_state(snaps, mappings.rules, naming, lifecycle, now, grants, granted)
    problems, frozen = ambiguous_rules(mappings.rules, snaps)
    if problems or frozen:
        desired = replace(desired, problems=(*desired.problems, *problems), frozen=desired.frozen | frozen)
    return apply_exclusions(desired, exclusions, now)


def make_plan(
    cfg: Config,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    ctx: RunContext,
    seen: int,
    privileges: PrivilegeCatalog = EMPTY,
    missing: Missing | None = None,
    reused: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> Plan:
    """``reused``: targets whose actual state the daemon took from its last full run
    (engine/shortcircuit.py), recorded in ``plan.meta`` for the audit trail."""
    pols = policies(cfg, missing, health.drop_failures(ctx, actual))
    diff_memo = ctx.warm.diffs if ctx.warm is not None else DiffMemo()
    owners = {t.name: t.privilege_owners for t in cfg.targets}
    target_plans = []
    for name, state in actual.items():
        changes, notices = diff(desired, state, pols[name], ctx.now, diff_memo)
        ours, translated = for_target(privileges, state.capabilities)  # MariaDB: schemas are databases
        more, more_notices = plan_privileges(ours, state, PrivilegePolicy(pols[name], owners[name]), changes)
        more_notices = [*translated, *more_notices] if state.privileges is not None else more_notices
        drift_policy = DriftPolicy(pols[name], catalog.public if catalog else "report", owners[name])
        drift, drift_notices = plan_privilege_drift(ours, catalog or Catalog({}), state, drift_policy)
        escalated, escalated_notices = plan_escalations(desired, state, pols[name])
        # what cannot work is reported at plan time, never failed at apply
        kept, refused = refuse_unworkable((*changes, *more, *drift, *escalated), desired, state)
        changes = execution_order(kept)
        notices = (*notices, *more_notices, *drift_notices, *escalated_notices, *refused)
        notices += tuple(credential_notices(state, pols[name]))
        memo = ctx.warm.fingerprints if ctx.warm is not None else None
        fingerprint = state.fingerprint(plan_scope(changes, notices), desired.sources, memo)
        target_plans.append(TargetPlan(name, fingerprint, changes, notices, state.capabilities.dialect))
    return Plan(
        created_at=ctx.now,
        config_digest=cfg.digest,
        targets=tuple(target_plans),
        identities_seen=seen,
        sources=tuple(sorted(desired.sources)),
        meta={
            "run_id": ctx.run_id,
            "actor": ctx.actor,
            "trigger": ctx.trigger,
            **({"reused_actual": dict(reused)} if reused else {}),
        },
    )


def plan_run(cfg: Config, ctx: RunContext, targets: Targets, mappings: Mappings | None = None) -> PlanOutcome:
    """``mappings`` already loaded (the daemon keeps the last valid ones); read from disk otherwise.
    The cyclic GC waits until the plan is made (a warm daemon's heap holds 100,000s of objects)."""
    early = shortcircuit.digests_meanwhile(targets, ctx.short_circuit, ctx.warm, cfg.digest)
    with paused_gc(), early as meanwhile:
        return _plan_run(cfg, ctx, targets, mappings, meanwhile)


def _plan_run(
    cfg: Config, ctx: RunContext, targets: Targets, mappings: Mappings | None, meanwhile: shortcircuit.Meanwhile
) -> PlanOutcome:
    if mappings is None:  # the daemon passes the rules it validated at start or reload
        mappings = load_mappings(cfg.mappings_dir)
        problems = mapping_errors(cfg, mappings)  # what validate refuses (an attribute no source maps)
        if problems:
            raise RuleError(problems)
    needs = source_needs(mappings.rules, cfg.naming.template)
    snapshots = read_sources(cfg, ctx, referenced_groups(mappings.rules), needs)
    gated = health.gate(cfg, ctx, snapshots)  # an override's record, if any
    try:
        return _plan(cfg, ctx, targets, mappings, meanwhile, snapshots, gated)
    except BaseException:
        ctx.hold(gated)  # an operator's override is on record even when the run fails afterwards
        raise


def _plan(
    cfg: Config,
    ctx: RunContext,
    targets: Targets,
    mappings: Mappings,
    meanwhile: shortcircuit.Meanwhile,
    snapshots: tuple[SourceSnapshot, ...],
    gated: tuple[AuditEvent, ...],
) -> PlanOutcome:
    excluded = review_exclusions.for_run(cfg, ctx.store, ctx.now)
    skipped, facts = (
        shortcircuit.attempt(cfg, ctx, mappings, snapshots, targets, meanwhile.digests, exclusions_digest(excluded))
        if ctx.short_circuit
        else (None, None)
    )
    if skipped is not None:  # a proven no-op: the last full run's desired and actual state stand
        assert ctx.warm is not None
        desired, actual = shortcircuit.cached(cfg, ctx.warm)
        events = (*gated, planned_event(ctx, skipped))
        return PlanOutcome(skipped, mappings, snapshots, desired, actual, {}, events)
    warm = ctx.warm
    desired = compute_desired(
        cfg, mappings, snapshots, ctx.now, excluded, warm.grants if warm else None, warm.unicode() if warm else None
    )
    facts = shortcircuit.measure(facts, meanwhile.digests) if facts is not None else None
    if facts is not None and ctx.warm is not None:
        actual, reused = shortcircuit.inspect(cfg, ctx.warm, facts, targets, meanwhile.inspected())
    else:
        actual, reused = targets.inspect_all(), {}
    missing = health.missing_runs(ctx, snapshots, actual)
    seen = sum(len(s.identities) for s in snapshots)
    plan = make_plan(cfg, desired, actual, ctx, seen, mappings.privileges, missing, reused, mappings.catalog)
    plan, violations = enforce_sod(  # withheld grants
        mappings, plan, desired, actual, ctx, policies(cfg), lifecycle_policy(cfg).zone, cfg.instance
    )
    events = (*gated, *violation_events(ctx, violations), planned_event(ctx, plan))
    if facts is not None:
        shortcircuit.remember(cfg, ctx, facts, snapshots, desired, actual, plan, missing, len(violations))
    return PlanOutcome(plan, mappings, snapshots, desired, actual, missing, events, violations)


def check(
    cfg: Config, ctx: RunContext, targets: Targets, mappings: Mappings | None = None, saved: Plan | None = None
) -> Checked:
    """Plan, then check safety: the one path of ``plan``, ``apply`` and the daemon.

    ``saved``: an approved plan; only its changes the re-derived plan makes too are kept,
    and a stale one is refused.  Nothing is written or raised here: the caller holds
    ``events`` for the audit trail (:meth:`RunContext.hold`) and raises ``refused``."""
    outcome = plan_run(cfg, ctx, targets, mappings)
    if saved is None:
        plan, events = outcome.plan, outcome.events
    else:  # re-derived: a saved change is applied only if the current plan makes it too
        events = (*outcome.events, planned_event(ctx, saved, saved=True))
        plan, error = _contained(cfg, saved, outcome)
        if error is not None:
            return Checked(outcome, plan, None, events, error)
    result = verdict(cfg, plan, outcome.actual, policies(cfg), ctx)
    return Checked(outcome, plan, result, (*events, *result.events), result.refused)


def _contained(cfg: Config, saved: Plan, outcome: PlanOutcome) -> tuple[Plan, ProvisionerError | None]:
    plan, refused = contained(saved, outcome.plan)
    listing = (
        f"{len(refused)} saved change(s) the current sources, rules and catalog do not make, or revocation(s) "
        "the saved plan leaves out (edited, or made from other data); nothing applied:\n  " + "\n  ".join(refused)
    )
    try:
        refuse_stale(saved, outcome.actual, cfg)
    except StalePlan as exc:
        return plan, StalePlan(f"{exc}\n{listing}") if refused else exc
    except PlanError as exc:
        return plan, exc
    return plan, PlanError(f"Saved plan refused: {listing}") if refused else None


def hold(ctx: RunContext, checked: Checked) -> None:
    """Hand everything the plan and its checks found to the run's audit trail (and log the
    breaker's verdict)."""
    if checked.verdict is not None:
        checked.verdict.log(ctx)
    ctx.hold(checked.events)


def safety_findings(cfg: Config, plan: Plan, actual: Mapping[str, ActualState]) -> tuple[list[str], list[BreakerTrip]]:
    """Every safety-check violation and every breaker trip of ``plan``."""
    return findings(cfg, plan, actual, policies(cfg))


def safety(cfg: Config, plan: Plan, actual: Mapping[str, ActualState], ctx: RunContext | None = None) -> None:
    """The checks of a plan made elsewhere (an access review's revocations): with ``ctx``,
    the breaker's records are written now; raises the refusal."""
    error: ProvisionerError | None
    if ctx is None:
        error = refusal(*safety_findings(cfg, plan, actual))
    else:
        result = verdict(cfg, plan, actual, policies(cfg), ctx)
        result.log(ctx)
        ctx.audit(list(result.events))
        error = result.refused
    if error is not None:
        raise error


def apply_run(
    cfg: Config,
    ctx: RunContext,
    targets: Targets,
    saved: Plan | None = None,
    *,
    mappings: Mappings | None = None,
    on_planned: Callable[[PlanOutcome], None] | None = None,
) -> Plan:
    """``mappings`` / ``on_planned``: the daemon's loaded rules, and its look at the fresh plan
    (desired state for its lifecycle timers) before anything is applied."""
    recover_interrupted(cfg, ctx, targets)
    checked = check(cfg, ctx, targets, mappings, saved)
    if saved is None and on_planned is not None:
        on_planned(checked.outcome)
    hold(ctx, checked)
    ctx.flush()  # planning's records, once, before the first change is executed (or the plan refused)
    if checked.refused is not None:
        raise checked.refused
    plan, snapshots, missing = checked.plan, checked.outcome.snapshots, checked.outcome.missing
    del checked  # executing needs neither the desired nor the actual state: let them go
    try:
        # the cyclic GC waits while executing (the statements and audit records of every
        # change are many small objects and no cycles: automatic collections rescanning the
        # plan cost a 10,000-user first sync about a third of its time); planning pauses it
        # on its own (one pause over both measured no better, docs/performance.md)
        with paused_gc():
            execute(plan, targets, ctx, cfg.safety.max_changes_per_transaction)
    except ApplyFailed:  # isolated failures: everything else applied, so the reads count
        health.record_success(ctx, snapshots, missing, ctx.now)
        raise
    health.record_success(ctx, snapshots, missing, ctx.now)
    raise_unread(snapshots)  # a source that could not be read: the rest applied, the run fails
    return plan
