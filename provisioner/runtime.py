"""The imperative shell around the pure core: run context, sources, targets,
execution, verification and the audit records of a run."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from provisioner.config import Config, EntraSourceConfig
from provisioner.core.audit import AuditEvent, EventKind
from provisioner.core.groupref import referenced_groups
from provisioner.core.model import ActualState, SourceSnapshot
from provisioner.core.needs import ALL, SourceNeeds
from provisioner.core.phases import apply_phases
from provisioner.core.plan import Change, ChangeKind, Plan, TargetPlan, plan_scope, readback_scope, transactions
from provisioner.core.verify import verify
from provisioner.errors import (
    ApplyFailed,
    PlanError,
    RunInterrupted,
    SourceUnhealthy,
    StalePlan,
    VerificationFailed,
)
from provisioner.logs import log
from provisioner.recovery import begun_event, completion_event, intent_event
from provisioner.retention import execute_drops
from provisioner.sources.factory import build_source
from provisioner.store.state import StateStore
from provisioner.targets.base import ApplyResult, FailedChange, Target
from provisioner.targets.factory import build_target

Progress = Callable[[str, int, "int | None"], None]
"""``progress(counter, advance, total)``: e.g. ("identities read", 120, None),
("changes applied", 1, 40).  Shown on a terminal by the CLI; a no-op elsewhere."""


def no_progress(counter: str, advance: int, total: int | None = None) -> None:
    """The default :data:`Progress`: report nothing."""


def never_stop() -> bool:
    return False


@dataclass(slots=True)
class RunContext:
    now: datetime
    actor: str
    trigger: str
    reason: str = ""
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    store: StateStore | None = None
    allow_mass_revocation: bool = False
    """Operator override of the breaker and health gate for this one run (needs ``reason``)."""
    progress: Progress = no_progress
    stop_requested: Callable[[], bool] = never_stop
    """Checked before each target's transaction; a stop request ends the run
    between transactions (the daemon's SIGTERM), never inside one."""
    short_circuit: bool = False
    """A warm process (the daemon) may skip inspect + diff on a proven no-op (provisioner/shortcircuit.py)."""

    @classmethod
    def manual(cls, cfg: Config, store: StateStore | None, reason: str = "", actor: str | None = None) -> RunContext:
        who = getpass.getuser()
        return cls(datetime.now(UTC), f"{who} ({actor})" if actor else who, "manual", reason, store=store)

    def audit(self, events: list[AuditEvent]) -> None:
        if self.store is not None:
            self.store.append(events)

    def event(self, kind: EventKind, **kw: Any) -> AuditEvent:
        return AuditEvent(self.run_id, datetime.now(UTC), self.actor, self.trigger, kind, **kw)


def read_sources(
    cfg: Config,
    ctx: RunContext,
    referenced_groups: frozenset[str] | None = None,
    needs: SourceNeeds = ALL,
) -> tuple[SourceSnapshot, ...]:
    """Read every source completely; an empty source stops the run.

    ``referenced_groups``: group names the rules test (Entra resolves membership for
    these only); read from the mappings when not given and a source needs them.
    ``needs``: the canonical attributes the plan depends on (default: every one)."""
    if referenced_groups is None:
        referenced_groups = _rule_groups(cfg)
    snaps = []
    for scfg in cfg.sources:
        source = build_source(scfg, store=ctx.store, referenced_groups=referenced_groups, needs=needs)
        try:
            snap = source.read()
        finally:
            source.close()
        if not snap.identities:
            raise SourceUnhealthy(
                f"source {scfg.name!r} returned no identities; refusing to plan "
                "(an empty directory never revokes anything)"
            )
        log.info("source_read", source=scfg.name, identities=len(snap.identities), groups=snap.group_count)
        ctx.progress("identities read", len(snap.identities), None)
        snaps.append(snap)
    return tuple(snaps)


def _rule_groups(cfg: Config) -> frozenset[str]:
    if not any(isinstance(s, EntraSourceConfig) for s in cfg.sources):
        return frozenset()
    from provisioner.mappings import load_mappings

    return referenced_groups(load_mappings(cfg.mappings_dir).rules)


class Targets(AbstractContextManager["Targets"]):
    """Every configured target, opened lazily and closed together."""

    def __init__(self, cfg: Config, only: set[str] | None = None) -> None:
        self._cfg = [t for t in cfg.targets if only is None or t.name in only]
        self._open: dict[str, Target] = {}

    def get(self, name: str) -> Target:
        if name not in self._open:
            tcfg = next(t for t in self._cfg if t.name == name)
            self._open[name] = build_target(tcfg)
        return self._open[name]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._cfg]

    def inspect_all(self) -> dict[str, ActualState]:
        return {name: self.get(name).inspect() for name in self.names}

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        for target in self._open.values():
            target.close()
        self._open.clear()


def refuse_stale(saved: Plan, actual: Mapping[str, ActualState], cfg: Config) -> None:
    if saved.config_digest != cfg.digest:
        raise PlanError(
            "Saved plan was made with a different configuration file "
            f"({saved.config_digest[:19]}..., now {cfg.digest[:19]}...); make a new plan"
        )
    for tp in saved.targets:
        state = actual.get(tp.target)
        if state is None:
            raise PlanError(f"Saved plan names target {tp.target!r}, which is not configured")
        now_fp = state.fingerprint(plan_scope(tp.changes, tp.notices), frozenset(saved.sources))
        if now_fp != tp.fingerprint:
            raise StalePlan(
                f"Saved plan is stale: target {tp.target!r} changed since the plan was made "
                f"({tp.fingerprint[:19]}... -> {now_fp[:19]}...). Run plan again and review it."
            )


def execute(plan: Plan, targets: Targets, ctx: RunContext, limit: int = 0) -> None:
    """``limit``: most changes per transaction (0 = one transaction per phase and target).

    Every target is applied even when an earlier one had isolated failures; the
    run then ends with :class:`ApplyFailed` listing every change that did not happen."""
    not_done: list[str] = []
    for tp in plan.targets:
        if tp.changes:
            if ctx.stop_requested():
                raise RunInterrupted(f"stop requested before target {tp.target!r}; nothing changed there")
            not_done += _execute_target(tp, targets.get(tp.target), ctx, limit)
    if not_done:
        raise ApplyFailed(
            f"{len(not_done)} change(s) did not happen (every other change was applied; "
            "the next run retries them):\n" + "\n".join(not_done)
        )


def _execute_target(tp: TargetPlan, target: Target, ctx: RunContext, limit: int = 0) -> list[str]:
    """Apply and verify one target's changes; retention drops run afterwards, each on its own.

    Two phases (:func:`provisioner.core.phases.apply_phases`): the changes that end
    or limit access commit first, then the rest.  Each phase is one transaction, or
    several when over ``limit`` changes (:func:`provisioner.core.plan.transactions`),
    each audited on its own.  A change the target refuses is isolated, audited as
    ``change_failed`` and listed in the result; verify checks what was applied."""
    drops = [c for c in tp.changes if c.kind is ChangeKind.DROP_ROLE]
    main = tuple(c for c in tp.changes if c.kind is not ChangeKind.DROP_ROLE)
    done = [0]
    statements = 0
    failed: list[FailedChange] = []
    chunks = [chunk for phase in apply_phases(main) for chunk in transactions(phase, limit)]
    for i, chunk in enumerate(chunks):
        if i and ctx.stop_requested():
            raise RunInterrupted(f"stop requested on target {tp.target!r} after {i} of {len(chunks)} transactions")
        # A role with a refused change keeps the rest of its changes for the next run: they
        # were planned on top of it (a grant's ledger assumes the earlier revoke happened).
        held = {f.change.role for f in failed}
        skipped = [FailedChange(c, "skipped: an earlier change of this role failed in this run") for c in chunk
                   if c.role in held]
        failed += skipped
        if skipped:
            ctx.audit([_failed_event(ctx, tp.target, f) for f in skipped])
        chunk = tuple(c for c in chunk if c.role not in held)
        if not chunk:
            continue
        result = _apply_transaction(tp.target, chunk, target, ctx, done, len(tp.changes))
        statements += result.statements
        failed += result.failed
    # a role with a refused change is not verified (its other changes may depend on it,
    # e.g. sessions of a role whose NOLOGIN waited for a lock); it is reported instead
    refused = {f.change.role for f in failed}
    applied = tuple(c for c in main if c.role not in refused)
    problems = verify(applied, target.inspect(readback_scope(applied))) if applied else []
    if problems:
        raise VerificationFailed(f"target {tp.target!r}: after apply the catalog disagrees:\n" + "\n".join(problems))
    log.info(
        "target_applied",
        target=tp.target,
        changes=done[0],
        failed=len(failed),
        statements=statements,
        transactions=len(chunks),
    )
    not_done = [f"{tp.target}: {f.describe()}" for f in failed]
    return not_done + (execute_drops(tp.target, drops, target, ctx) if drops else [])


def _apply_transaction(
    name: str, changes: tuple[Change, ...], target: Target, ctx: RunContext, done: list[int], total: int
) -> ApplyResult:
    applied: list[Change] = []

    def on_change(change: Change) -> None:
        applied.append(change)
        done[0] += 1
        ctx.progress("changes applied", done[0], total)

    ctx.audit([intent_event(ctx, name, changes)])
    error: BaseException | None = None
    failed: tuple[FailedChange, ...] = ()
    def on_begin(transaction: str | None) -> None:
        ctx.audit([begun_event(ctx, name, transaction)])

    try:
        result = target.apply(changes, on_change=on_change, on_begin=on_begin)
        failed = result.failed
    except BaseException as exc:
        error = exc
        raise
    finally:
        ctx.audit(
            [_applied_event(ctx, name, c) for c in applied]
            + [_failed_event(ctx, name, f) for f in failed]
            + [completion_event(ctx, name, len(changes), len(applied), error, len(failed))]
        )
        for change in applied:
            log.info(
                "change_applied",
                target=name,
                change=change.describe(),
                reasons=[r.describe() for r in change.reasons],
                run_id=ctx.run_id,
            )
        for f in failed:
            log.error("change_failed", target=name, change=f.change.describe(), error=f.error, run_id=ctx.run_id)
    return result


def _failed_event(ctx: RunContext, target: str, failure: FailedChange) -> AuditEvent:
    change = failure.change
    return ctx.event(
        EventKind.CHANGE_FAILED,
        target=target,
        role=change.role,
        change=change.to_json(),
        reason=failure.error,
        before=dict(change.before),
        after=dict(change.after),
    )


def _applied_event(ctx: RunContext, target: str, change: Change) -> AuditEvent:
    reason = "; ".join(r.describe() for r in change.reasons)
    if ctx.reason:
        reason = f"{reason} | operator: {ctx.reason}" if reason else f"operator: {ctx.reason}"
    return ctx.event(
        EventKind.CHANGE_APPLIED,
        target=target,
        role=change.role,
        change=change.to_json(),
        reason=reason,
        before=dict(change.before),
        after=dict(change.after),
    )
