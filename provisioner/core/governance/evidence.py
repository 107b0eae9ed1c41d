"""Quarterly evidence: figures computed from audit-trail records.  Pure.

``quarter_bounds("2026-Q4")`` is the half-open UTC interval of the quarter.
:func:`leaver_latencies` reads audit record contents in ``seq`` order and measures,
for every login that a leaver change disabled (NOLOGIN), the time from the
directory change to the change committed on the target:

* with a ``leave_date`` (HR's leave instant) the interval starts there (exact);
* otherwise (account disabled or removed in the directory) the directory changed
  after the last run that saw nothing to do for that person and before the run that
  disabled them; the interval starts at that previous run (an upper bound: the
  latency reported is never less than the real one).

:func:`manifest_message` is the byte string an evidence pack's manifest signs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any


class QuarterError(ValueError):
    """Not a quarter such as 2026-Q4."""


def quarter_bounds(quarter: str) -> tuple[datetime, datetime]:
    try:
        year_text, q_text = quarter.upper().split("-Q")
        year, q = int(year_text), int(q_text)
    except ValueError as exc:
        raise QuarterError(f"{quarter!r} is not a quarter such as 2026-Q4") from exc
    if not 1 <= q <= 4 or not 1970 <= year <= 9999:
        raise QuarterError(f"{quarter!r} is not a quarter such as 2026-Q4")
    start = datetime(year, 3 * q - 2, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True, slots=True)
class LeaverLatency:
    target: str
    role: str
    directory_change: datetime
    disabled_at: datetime
    basis: str
    """``leave_date`` (exact) or ``previous run`` (upper bound)"""
    audit_seq: int

    @property
    def seconds(self) -> float:
        return max(0.0, (self.disabled_at - self.directory_change).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "role": self.role, "directory_change": self.directory_change.isoformat(),
                "disabled_at": self.disabled_at.isoformat(), "basis": self.basis, "seconds": round(self.seconds, 3),
                "audit_seq": self.audit_seq}


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = datetime.combine(date.fromisoformat(text[:10]), time(0), UTC)
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _disables(change: Mapping[str, Any]) -> bool:
    params = change.get("params") or {}
    return change.get("kind") == "alter_role" and params.get("login") is False


def leaver_latencies(records: Iterable[tuple[int, Mapping[str, Any]]]) -> list[LeaverLatency]:
    """``records``: (seq, content) of the audit trail in seq order."""
    out: list[LeaverLatency] = []
    run_started: dict[str, datetime] = {}
    previous_run: dict[str, datetime | None] = {}
    last_planned: datetime | None = None
    for seq, rec in records:
        at = _instant(str(rec.get("at", "")))
        run = str(rec.get("run_id", ""))
        if rec.get("kind") == "run_planned" and at is not None and run not in run_started:
            previous_run[run] = last_planned
            run_started[run] = at
            last_planned = at
            continue
        change = rec.get("change")
        if rec.get("kind") != "change_applied" or not isinstance(change, Mapping) or not _disables(change):
            continue
        reasons = [r for r in change.get("reasons") or [] if str(r.get("rule", "")) == "lifecycle:leaver"]
        if not reasons or at is None:
            continue
        # the instant the leave took effect (``leave_at``: the end of a date-only last working
        # day in [lifecycle] timezone); records without it name the date alone
        leave = next((str(attrs.get("leave_at") or attrs.get("leave_date")) for r in reasons
                      if (attrs := r.get("attributes") or {}).get("leave_date")), None)
        start = _instant(leave) if leave else None
        basis = "leave_date"
        if start is None:
            start, basis = previous_run.get(run) or run_started.get(run) or at, "previous run"
        out.append(LeaverLatency(str(rec.get("target")), str(rec.get("role")), start, at, basis, seq))
    return out


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies: Sequence[LeaverLatency]) -> dict[str, Any]:
    secs = [round(x.seconds, 3) for x in latencies]
    return {
        "count": len(secs),
        "p50_seconds": percentile(secs, 50),
        "p95_seconds": percentile(secs, 95),
        "p99_seconds": percentile(secs, 99),
        "max_seconds": max(secs) if secs else None,
        "exact": sum(1 for x in latencies if x.basis == "leave_date"),
        "upper_bound": sum(1 for x in latencies if x.basis != "leave_date"),
    }


def manifest_message(manifest: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a manifest without its ``signature`` (what the signature covers)."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
