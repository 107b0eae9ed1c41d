"""One daemon run: read, plan, check, and apply the targets this replica leads."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from provisioner.config import Config
from provisioner.core.identity import lifecycle as core_lifecycle
from provisioner.core.identity.lifecycle import parse_instant
from provisioner.core.values.model import DesiredState, Lifecycle
from provisioner.core.values.plan import Change, ChangeKind, Plan
from provisioner.daemon.ha import Leadership
from provisioner.daemon.metrics import Metrics
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.gcpause import Collector, paused_gc
from provisioner.engine.record import recorded_run
from provisioner.engine.run import PlanOutcome, apply_run, check, hold
from provisioner.engine.warm import WarmState
from provisioner.errors import PlanError, ProvisionerError, RunInterrupted, SafetyViolation, StalePlan
from provisioner.logs import log
from provisioner.mappings import Mappings
from provisioner.store.state import StateStore

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated configuration and its mapping rules, swapped whole on reload."""

    cfg: Config
    mappings: Mappings
    loaded_at: datetime


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    mode: str
    plan: Plan
    applied_targets: tuple[str, ...]
    follower_targets: tuple[str, ...]
    upcoming: tuple[datetime, ...]
    """Future hire / leave instants of the desired state (for the timers)."""

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "applied_targets": list(self.applied_targets),
            "follower_targets": list(self.follower_targets),
            "plan": self.plan.to_json(),
        }


class Busy(Exception):
    """Another run is in progress (runs never overlap)."""


def replica_actor(cfg: Config) -> str:
    """``service@host/pid``: which replica acted, in the audit trail and run history."""
    return f"{cfg.provisioner.service_identity}@{socket.gethostname()}/{os.getpid()}"


def upcoming_instants(desired: DesiredState, now: datetime) -> tuple[datetime, ...]:
    """Future hire and leave instants of the desired state (the core's ``next_lifecycle_events``)."""
    return tuple(sorted({e[0] for e in core_lifecycle.next_lifecycle_events(desired, now)}))


def _leaver_since(change: Change) -> datetime | None:
    for reason in change.reasons:
        attrs = dict(reason.attributes)
        raw = attrs.get("leave_at") or attrs.get("leave_date")
        if raw:
            return parse_instant(raw, leave=True)
    return None


class Runner:
    def __init__(
        self,
        current: Callable[[], Loaded],
        store: StateStore,
        metrics: Metrics,
        leadership: Leadership,
        stopping: threading.Event,
        warm: WarmState,
    ) -> None:
        self._current = current
        self._warm = warm
        self._store = store
        self._metrics = metrics
        self._leadership = leadership
        self._stopping = stopping
        self._lock = threading.Lock()
        self._collector = Collector()
        self._leaver_first_seen: dict[tuple[str, str], datetime] = {}
        self.set_timers: Callable[[Iterable[datetime]], int] | None = None
        """Called after every run that planned, whatever triggered it (schedule, HTTP,
        timer, retry) and whether or not its apply succeeded: the lifecycle timers."""

    def exclusive(self, work: Callable[[], T]) -> T:
        """Run ``work`` while no run is in progress (raise :class:`Busy` otherwise)."""
        if self._stopping.is_set():
            raise RunInterrupted("the daemon is stopping; no new work starts")
        if not self._lock.acquire(blocking=False):
            raise Busy("a run is in progress")
        try:
            return work()
        finally:
            self._lock.release()

    def wait_idle(self) -> None:
        """Block until the run in progress (if any) has ended."""
        with self._lock:
            pass

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def run(
        self, requested: str, trigger: str, now: datetime | None = None, actor: str | None = None, reason: str = ""
    ) -> RunResult:
        """Plan (and apply when ``requested`` and the config both say apply); raise
        :class:`Busy` if a run is already in progress.  ``actor`` / ``reason``: who asked
        (an HTTP trigger) and why, recorded beside the replica."""
        if self._stopping.is_set():
            raise RunInterrupted("the daemon is stopping; no new run starts")
        if not self._lock.acquire(blocking=False):
            raise Busy("a run is in progress")
        seen: list[PlanOutcome] = []
        try:
            with paused_gc():
                return self._run(requested, trigger, now, seen, actor, reason)
        finally:
            self._lock.release()
            self._refresh_timers(seen, trigger)
            self._collector.collect()

    def _refresh_timers(self, seen: list[PlanOutcome], trigger: str) -> None:
        if not seen or self.set_timers is None:
            return
        upcoming = upcoming_instants(seen[0].desired, seen[0].plan.created_at)
        count = self.set_timers(upcoming)
        log.info(
            "timers_set",
            trigger=trigger,
            timers=count,
            next=upcoming[0].astimezone(UTC).isoformat() if upcoming else None,
        )

    def _run(
        self,
        requested: str,
        trigger: str,
        now: datetime | None,
        seen: list[PlanOutcome],
        actor: str | None = None,
        reason: str = "",
    ) -> RunResult:
        loaded = self._current()
        cfg = loaded.cfg
        apply = requested == "apply" and cfg.daemon.mode == "apply"
        ctx = RunContext(
            now or datetime.now(UTC),
            f"{actor} via {replica_actor(cfg)}" if actor else replica_actor(cfg),
            trigger,
            reason,
            store=self._store,
            stop_requested=self._stopping.is_set,
            warm=self._warm,
        )
        lead = tuple(t.name for t in cfg.targets if self._leadership.leads(t.name)) if apply else ()
        following = tuple(t.name for t in cfg.targets if t.name not in lead) if apply else ()
        mode = "apply" if lead else "plan"
        log.info("run_started", run_id=ctx.run_id, mode=mode, trigger=trigger, follower_targets=list(following))
        started = time.monotonic()
        outcome = "failed"
        try:
            with recorded_run(ctx, mode, cfg) as summary:
                if lead:
                    with Targets(cfg, only=set(lead)) as targets:
                        plan = apply_run(cfg, ctx, targets, mappings=loaded.mappings, on_planned=self._planned(seen))
                else:
                    with Targets(cfg) as targets:
                        checked = check(cfg, ctx, targets, loaded.mappings)
                        self._planned(seen)(checked.outcome)
                        hold(ctx, checked)  # recorded when the run closes
                        plan = checked.plan
                        if checked.refused is not None:
                            raise checked.refused
                summary.update(
                    identities=plan.identities_seen,
                    changes=len(plan.changes),
                    by_kind=plan.counts(),
                    applied_targets=list(lead),
                    follower_targets=list(following),
                )
            outcome = "ok"
        except SafetyViolation:
            outcome = "refused"
            self._metrics.breaker_trips.inc()
            raise
        except (StalePlan, PlanError):
            outcome = "refused"
            raise
        except ProvisionerError:
            outcome = "failed"
            raise
        finally:
            self._metrics.runs.labels(outcome=outcome).inc()
            self._metrics.run_duration.observe(time.monotonic() - started)
        if lead:
            self._after_apply(plan, ctx.now)
        stamp = time.time()
        for tp in plan.targets:
            self._metrics.last_success.labels(target=tp.target).set(stamp)
        upcoming = upcoming_instants(seen[0].desired, ctx.now) if seen else ()
        return RunResult(ctx.run_id, mode, plan, lead, following, upcoming)

    def _planned(self, seen: list[PlanOutcome]) -> Callable[[PlanOutcome], None]:
        def keep(outcome: PlanOutcome) -> None:
            seen.append(outcome)
            self._metrics.identities_seen.set(outcome.plan.identities_seen)
            self._metrics.record_shortcuts(outcome.plan.meta)
            self._note_leavers(outcome.plan, outcome.plan.created_at)

        return keep

    def _after_apply(self, plan: Plan, now: datetime) -> None:
        done = datetime.now(UTC)
        self._metrics.record_applied(plan.changes)
        for tp in plan.targets:
            for change in self._disables(tp.changes):
                since = _leaver_since(change) or self._leaver_first_seen.get((tp.target, change.role), now)
                self._metrics.record_leaver(since, done)
                self._leaver_first_seen.pop((tp.target, change.role), None)

    @staticmethod
    def _disables(changes: Iterable[Change]) -> list[Change]:
        return [
            c
            for c in changes
            if c.kind is ChangeKind.ALTER_ROLE
            and c.param("login") is False
            and any(r.rule.startswith(f"lifecycle:{Lifecycle.LEAVER.value}") for r in c.reasons)
        ]

    def _note_leavers(self, plan: Plan, now: datetime) -> None:
        """Remember when each leaver was first planned (the latency's start when no leave date)."""
        for tp in plan.targets:
            for change in self._disables(tp.changes):
                self._leaver_first_seen.setdefault((tp.target, change.role), now)
