"""Source health gate and lifecycle memory across runs (shell, uses the state store).

* Health gate: a source whose identity count dropped by more than
  ``[safety] max_identity_drop`` against the last good read stops the run
  before anything is diffed (:class:`SourceUnhealthy`).  An empty source is
  already refused by :func:`provisioner.runtime.read_sources`.
* Vanished identities: how many consecutive successful reads each managed
  identity has been missing (``lifecycle.vanish_after_runs``).
* Failed drops: the last error of each role whose drop failed, reported in
  every plan until the drop succeeds.

Counts are written only after a successful apply: a dry-run plan never moves
the baseline or a vanish counter.  Keys in the store's key/value table:
``health.identities.<source>``, ``lifecycle.missing.<source>``,
``lifecycle.drop_failures.<target>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from provisioner.config import Config
from provisioner.core.audit import EventKind
from provisioner.core.lifecycle import flatten_missing, missing_counts
from provisioner.core.model import ActualState, SourceSnapshot
from provisioner.errors import SourceUnhealthy
from provisioner.logs import log

if TYPE_CHECKING:
    from provisioner.runtime import RunContext


def _count_key(source: str) -> str:
    return f"health.identities.{source}"


def _missing_key(source: str) -> str:
    return f"lifecycle.missing.{source}"


def drop_failures_key(target: str) -> str:
    return f"lifecycle.drop_failures.{target}"


def identity_drop(previous: int, current: int) -> float:
    """Share of identities lost against ``previous`` (0 when it grew)."""
    return max(0.0, (previous - current) / previous) if previous > 0 else 0.0


def gate(cfg: Config, ctx: RunContext, snapshots: Iterable[SourceSnapshot]) -> None:
    """Refuse snapshots whose identity count dropped beyond the threshold.

    ``ctx.allow_mass_revocation`` (with a reason) lets a known mass departure
    through; the override is recorded in the audit trail."""
    if ctx.store is None:
        return
    limit = cfg.safety.max_identity_drop
    problems = []
    for snap in snapshots:
        last = ctx.store.get(_count_key(snap.source))
        if not isinstance(last, Mapping) or not isinstance(last.get("count"), int):
            continue
        drop = identity_drop(last["count"], len(snap.identities))
        if drop > limit:
            problems.append(
                f"source {snap.source!r} returned {len(snap.identities)} identities, "
                f"{drop:.0%} fewer than the {last['count']} of the last good read ({last.get('at')}); "
                f"[safety] max_identity_drop is {limit:.0%}"
            )
    if not problems:
        return
    if ctx.allow_mass_revocation:
        ctx.audit([ctx.event(EventKind.OVERRIDE, reason=ctx.reason, after={"health_gate": problems})])
        log.warning("health_gate_overridden", run_id=ctx.run_id, problems=problems, reason=ctx.reason)
        return
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
    """After a successful apply: the new baseline count and the vanish counters."""
    if ctx.store is None:
        return
    items: list[tuple[str, Any]] = []
    for snap in snapshots:
        items.append((_count_key(snap.source), {"count": len(snap.identities), "at": at.isoformat()}))
        items.append((_missing_key(snap.source), dict(missing.get(snap.source, {}))))
    ctx.store.put_many(items)


__all__ = ["drop_failures", "flatten_missing", "gate", "missing_runs", "record_success"]
