"""The warm process's no-op short-circuit (issue 9): the shell around
:func:`provisioner.core.reconcile.shortcircuit.decide`.

A run may skip inspecting and diffing the targets when every source returned the
very snapshot object of the last full run (the incremental LDAP reader reuses it
on a no-op), the mappings files and configuration are unchanged, the UTC date is
the same with no lifecycle instant passed, and each target's role catalog --
digested in the snapshot the last full run inspected (PostgreSQL), or before it --
is unchanged while that run's plan for it was empty.  Otherwise the run plans in
full, but a target whose digest still equals the one the last full run inspected
with is not inspected again: that run's actual state stands, with the
open sessions read afresh (:func:`inspect`).  The digests are queried once per
run, in a background thread beside the source read (:func:`digests_meanwhile`).
State lives in the daemon's :class:`~provisioner.engine.warm.WarmState`; a CLI run has none and never skips.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from provisioner.config import Config
from provisioner.core.identity.lifecycle import next_lifecycle_events
from provisioner.core.reconcile.shortcircuit import RunFacts, Verified, decide, precheck
from provisioner.core.values.model import ActualState, DesiredState, SourceSnapshot
from provisioner.core.values.plan import Plan, TargetPlan
from provisioner.engine import health
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.health import Missing
from provisioner.engine.warm import LastRun, WarmState
from provisioner.logs import log
from provisioner.mappings import Mappings


def mappings_digest(mappings: Mappings) -> str:
    """SHA-256 over every file of the mappings directory (names and contents)."""
    h = hashlib.sha256(str(mappings.root).encode())
    root = mappings.root
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(b"\0" + str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _same_snapshots(now: tuple[SourceSnapshot, ...], before: tuple[SourceSnapshot, ...]) -> bool:
    return len(now) == len(before) and all(
        a.source == b.source and a.identities is b.identities and a.group_count == b.group_count and a.complete
        for a, b in zip(now, before, strict=True)
    )


def catalog_digests(targets: Targets) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in targets.names:
        out[name] = targets.get(name).catalog_digest()
    return out


Digests = Callable[[], dict[str, str | None]]
"""Each target's catalog digest (None: the target has none), taken once per run."""

Inspected = Mapping[str, "ActualState | Exception"]
"""Targets inspected early, beside the source read (a failure kept to be raised where the
run would have inspected)."""


def _stale(last: LastRun | None, name: str, digest: str | None) -> bool:
    """Whether target ``name`` must be inspected afresh: no last full run of it, or its catalog
    digest moved since the one taken before that run inspected it."""
    if last is None or last.actual.get(name) is None:
        return True
    return digest is None or digest != last.verified.facts.catalog_digests.get(name)


class Meanwhile:
    """What the background thread of :func:`digests_meanwhile` finds: the digests, then the
    inspects they call for."""

    def __init__(self, result: Callable[[], tuple[dict[str, str | None], Inspected]]) -> None:
        self._result = result

    def digests(self) -> dict[str, str | None]:
        return self._result()[0]

    def inspected(self) -> Inspected:
        return self._result()[1]


def _digest_then_inspect(
    targets: Targets, warm: WarmState | None, config_digest: str
) -> tuple[dict[str, str | None], Inspected]:
    if warm is None:
        return catalog_digests(targets), {}
    digests: dict[str, str | None] = {}
    inspected: dict[str, ActualState | Exception] = {}
    last = warm.last_of(config_digest)
    for name in targets.names:
        # the digest the last full run's actual state was read with (None: none to reuse)
        before = None
        if last is not None and last.actual.get(name) is not None:
            before = last.verified.facts.catalog_digests.get(name)
        try:
            digests[name], state = targets.get(name).inspect_if_moved(before, warm.rows_of(name))
        except Exception as exc:  # raised where the run inspects (a fault in one target stays there)
            digests[name], inspected[name] = None, exc  # no digest: stale, never short-circuited
            continue
        if state is not None:  # the digest moved: the run inspects it, whatever the sources say
            inspected[name] = state
    return digests, inspected


@contextmanager
def digests_meanwhile(
    targets: Targets, enabled: bool, warm: WarmState | None = None, config_digest: str = ""
) -> Iterator[Meanwhile]:
    """The daemon's catalog digests, queried in a background thread from the start of the
    run, while the sources are read and the desired state computed (the server does the
    work and psycopg releases the GIL while it waits): before any inspect, as required.
    With ``warm``, each target's digest comes with the inspect when it moved since the last
    full run (such a run cannot be short-circuited and inspects it anyway): one read of the
    target (:meth:`~provisioner.targets.base.Target.inspect_if_moved`), beside the source read.
    Leaving the block waits for the thread, and the run's own
    thread touches no target until the thread's work is done: no connection is ever shared."""
    if not enabled:
        yield Meanwhile(lambda: (catalog_digests(targets), {}))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-digest") as pool:
        work = contextvars.copy_context().run  # the run's log context in the thread too
        yield Meanwhile(pool.submit(work, _digest_then_inspect, targets, warm, config_digest).result)


def attempt(
    cfg: Config,
    ctx: RunContext,
    mappings: Mappings,
    snaps: tuple[SourceSnapshot, ...],
    targets: Targets,
    digests: Digests,
    exclusions: str = "",
) -> tuple[Plan | None, RunFacts]:
    """The empty plan of a short-circuited run (audited by the caller) or None, and
    this run's facts so far (no catalog digests: :func:`measure` takes them).
    ``exclusions``: digest of the access-review exclusions in force (a new one plans in full)."""
    warm = ctx.warm
    assert warm is not None
    last = warm.last_of(cfg.digest)
    same = last is not None and _same_snapshots(snaps, last.snapshots)
    day = ctx.now.astimezone(ZoneInfo(cfg.lifecycle.timezone)).date()  # the rules' today, SoD expiry
    facts = RunFacts(ctx.now, same, mappings_digest(mappings) + exclusions, cfg.digest, {}, day)
    names = frozenset(targets.names)
    why = precheck(last.verified if last else None, facts, names)
    if not why and last is not None:
        facts = replace(facts, catalog_digests=digests())
        why = decide(last.verified, facts, names)
    if why or last is None:
        log.info("short_circuit_skipped", run_id=ctx.run_id, reason=why)
        return None, facts
    log.info("short_circuit", run_id=ctx.run_id)
    plan = Plan(
        created_at=ctx.now,
        config_digest=cfg.digest,
        targets=tuple(TargetPlan(tp.target, tp.fingerprint, (), tp.notices, tp.dialect) for tp in last.plan.targets),
        identities_seen=sum(len(s.identities) for s in snaps),
        sources=last.plan.sources,
        meta={
            "run_id": ctx.run_id,
            "actor": ctx.actor,
            "trigger": ctx.trigger,
            "short_circuit": {
                "verified_at": last.verified.facts.at.isoformat(),
                "verified_run_id": last.plan.meta.get("run_id"),
                "mappings_digest": facts.mappings_digest,
                "catalog_digests": dict(facts.catalog_digests),
            },
        },
    )
    return plan, facts


def measure(facts: RunFacts, digests: Digests) -> RunFacts:
    """The full path's catalog digests, taken with its inspect's snapshot or before it (a change
    in between then shows as a different digest at the next run, never as a missed one)."""
    return replace(facts, catalog_digests=digests())


def inspect(
    cfg: Config, warm: WarmState, facts: RunFacts, targets: Targets, early: Inspected | None = None
) -> tuple[dict[str, ActualState], dict[str, Any]]:
    """Each target's actual state: the last full run's, when its catalog digest (taken
    before that run inspected; with managed privileges it covers them too) equals this
    run's -- with the open sessions read afresh, so a leaver's new session is still ended -- else a
    fresh inspect (the one :func:`digests_meanwhile` made in ``early``, if it did).  Also what
    was reused, for the audit record."""
    last = warm.last_of(cfg.digest)
    actual: dict[str, ActualState] = {}
    reused: dict[str, Any] = {}
    for name in targets.names:
        digest = facts.catalog_digests.get(name)
        if _stale(last, name, digest):
            got = (early or {}).get(name)
            if isinstance(got, Exception):
                raise got
            actual[name] = got if got is not None else targets.get(name).inspect(reuse=warm.rows_of(name))
            continue
        assert last is not None
        before = last.actual[name]
        fresh = targets.get(name).inspect(frozenset())  # sessions only
        actual[name] = replace(before, sessions=fresh.sessions)
        reused[name] = {"catalog_digest": digest, "inspected_run_id": last.plan.meta.get("run_id")}
    if reused:
        log.info("actual_state_reused", targets=sorted(reused))
    return actual, reused


def cached(cfg: Config, warm: WarmState) -> tuple[DesiredState, Mapping[str, ActualState]]:
    last = warm.last_of(cfg.digest)
    assert last is not None
    return last.desired, last.actual


def remember(
    cfg: Config,
    ctx: RunContext,
    now: RunFacts,
    snaps: tuple[SourceSnapshot, ...],
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    plan: Plan,
    missing: Missing,
    sod_violations: int,
) -> None:
    """Keep this full run's facts; only targets with nothing to do qualify later."""
    failures = health.drop_failures(ctx, actual)
    # a break-glass account's sessions are reported each run (managed privileges are in the digest)
    watched = {t.name for t in cfg.targets if t.break_glass or cfg.lifecycle.break_glass}
    counting = any(missing.values()) or sod_violations > 0
    quiet = frozenset(
        tp.target
        for tp in plan.targets
        if not counting and not tp.changes and not failures.get(tp.target) and tp.target not in watched
    )
    instants = (*(e.at for e in next_lifecycle_events(desired, ctx.now)), *_role_instants(cfg, actual))
    assert ctx.warm is not None
    # one configuration at a time: a reload must not keep the old state alive; only a quiet
    # target's plan (no change) is ever repeated, so the changes are not kept (a first sync's
    # 300,000 would stay in memory until the next run)
    kept = replace(plan, targets=tuple(replace(tp, changes=()) for tp in plan.targets))
    ctx.warm.last = LastRun(cfg.digest, Verified(now, instants, quiet), snaps, desired, actual, kept)


def _role_instants(cfg: Config, actual: Mapping[str, ActualState]) -> list[datetime]:
    """Every managed role's VALID UNTIL and, when retention drops are on, its retention end."""
    lc = cfg.lifecycle
    spans = [timedelta(0), *([timedelta(days=lc.retention_days)] if lc.drop_after_retention else [])]
    return [
        role.valid_until + span
        for state in actual.values()
        for role in state.roles.values()
        if role.marker is not None and role.valid_until is not None
        for span in spans
    ]
