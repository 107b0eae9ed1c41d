"""Source health gate and lifecycle memory across runs (shell, uses the state store).

* Health gate: a source whose identity count dropped by more than
  ``[safety] max_identity_drop`` against the baseline -- the largest good count
  of the last 14 days, so that a series of smaller drops cannot walk it down --
  stops the run before anything is diffed (:class:`SourceUnhealthy`).  An empty source is
  already refused by :func:`provisioner.engine.execute.read_sources`.
* Vanished identities: how many consecutive successful reads each managed
  identity has been missing (``lifecycle.vanish_after_runs``).
* Failed drops: the last error of each role whose drop failed, reported in
  every plan until the drop succeeds.

Counts are written after every apply (a saved plan's included, and one whose
failed changes were isolated): a dry-run plan never moves the baseline or a
vanish counter.  Keys in the store's key/value table:
``health.identities.<source>``, ``lifecycle.missing.<source>``,
``lifecycle.drop_failures.<target>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.identity.lifecycle import flatten_missing, missing_counts
from provisioner.core.values.model import ActualState, SourceSnapshot
from provisioner.engine.context import RunContext
from provisioner.errors import SourceUnhealthy
from provisioner.logs import log

Missing = Mapping[str, Mapping[str, int]]
"""Per source, managed stable ids missing from this read -> consecutive reads missing."""

def _count_key(source: str) -> str:
    return f"health.identities.{source}"


def _missing_key(source: str) -> str:
    return f"lifecycle.missing.{source}"


def drop_failures_key(target: str) -> str:
    return f"lifecycle.drop_failures.{target}"


def identity_drop(previous: int, current: int) -> float:
    """Share of identities lost against ``previous`` (0 when it grew)."""
    return max(0.0, (previous - current) / previous) if previous > 0 else 0.0


BASELINE_DAYS = 14
"""The health baseline is the largest count of the last good reads of this many days."""


def baseline(last: Mapping[str, Any], today: date, days: int = BASELINE_DAYS) -> int | None:
    """The count a new read is compared with: the largest daily count of the window.

    A maximum cannot ratchet down: four runs each losing 18% are compared with the
    count before the first one, not each with the one before (docs/lifecycle.md)."""
    daily = _window(last, today, days)
    if daily:
        return max(daily.values())
    count = last.get("count")
    return count if isinstance(count, int) else None


def _window(last: Mapping[str, Any], today: date, days: int = BASELINE_DAYS) -> dict[str, int]:
    """Per UTC day (ISO date), the largest good count; only days within the window."""
    daily = last.get("daily")
    if not isinstance(daily, Mapping):
        return {}
    first = (today - timedelta(days=days - 1)).isoformat()
    return {str(d): int(n) for d, n in daily.items() if isinstance(n, int) and str(d) >= first}


def gate(cfg: Config, ctx: RunContext, snapshots: Iterable[SourceSnapshot]) -> tuple[AuditEvent, ...]:
    """Refuse snapshots whose identity count dropped beyond the threshold against the
    baseline (the largest good count of the last :data:`BASELINE_DAYS` days).

    ``ctx.allow_mass_revocation`` (with a reason) lets a known mass departure
    through; the override's audit record is returned (the run records it when planning
    ends) and the baseline is reset after the apply."""
    if ctx.store is None:
        return ()
    limit = cfg.safety.max_identity_drop
    problems = []
    for snap in snapshots:
        if snap.unreadable:  # not read at all: nobody of it is changed (engine/connections.py)
            continue
        last = ctx.store.get(_count_key(snap.source))
        if not isinstance(last, Mapping):
            continue
        base = baseline(last, ctx.now.date())
        if base is None:
            continue
        drop = identity_drop(base, len(snap.identities))
        if drop > limit:
            problems.append(
                f"source {snap.source!r} returned {len(snap.identities)} identities, "
                f"{drop:.0%} fewer than the baseline of {base} (the largest good read of the last "
                f"{BASELINE_DAYS} days; last read {last.get('count')} at {last.get('at')}); "
                f"[safety] max_identity_drop is {limit:.0%}"
            )
    if not problems:
        return ()
    if ctx.allow_mass_revocation:
        log.warning("health_gate_overridden", run_id=ctx.run_id, problems=problems, reason=ctx.reason)
        return (ctx.event(EventKind.OVERRIDE, reason=ctx.reason, after={"health_gate": problems}),)
    log.error("source_unhealthy", run_id=ctx.run_id, problems=problems)
    raise SourceUnhealthy(
        "source health gate: " + "; ".join(problems) + "; refusing to plan (nothing was changed)"
    )


def missing_runs(
    ctx: RunContext, snapshots: Iterable[SourceSnapshot], actual: Mapping[str, ActualState]
) -> dict[str, dict[str, int]]:
    """Per source, stable id -> consecutive successful reads missing, this read included."""
    snaps = list(snapshots)
    previous: dict[str, Mapping[str, int]] = {}
    if ctx.store is not None:
        for snap in snaps:
            value = ctx.store.get(_missing_key(snap.source))
            previous[snap.source] = value if isinstance(value, Mapping) else {}
    return missing_counts(previous, snaps, actual.values())


def drop_failures(ctx: RunContext, targets: Iterable[str]) -> dict[str, dict[str, str]]:
    if ctx.store is None:
        return {}
    out = {}
    for name in targets:
        value = ctx.store.get(drop_failures_key(name))
        out[name] = dict(value) if isinstance(value, Mapping) else {}
    return out


def record_success(
    ctx: RunContext, snapshots: Iterable[SourceSnapshot], missing: Mapping[str, Mapping[str, int]], at: datetime
) -> None:
    """After every apply (a saved plan's too, and one with isolated failures): the
    read's count joins the baseline window, and the vanish counters move on.  An
    operator override (``allow_mass_revocation``) starts a new window at this count."""
    if ctx.store is None:
        return
    items: list[tuple[str, Any]] = []
    day = at.date()
    for snap in snapshots:
        if snap.unreadable:  # no count and no vanish counter moves for a source not read
            continue
        count = len(snap.identities)
        last = ctx.store.get(_count_key(snap.source))
        daily = {} if ctx.allow_mass_revocation or not isinstance(last, Mapping) else _window(last, day)
        daily[day.isoformat()] = max(count, daily.get(day.isoformat(), 0))
        items.append((_count_key(snap.source), {"count": count, "at": at.isoformat(), "daily": daily}))
        items.append((_missing_key(snap.source), dict(missing.get(snap.source, {}))))
    ctx.store.put_many(items)


__all__ = ["drop_failures", "flatten_missing", "gate", "missing_runs", "record_success"]
