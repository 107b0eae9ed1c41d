"""core/governance/evidence.py: quarters, nearest-rank percentiles, leaver latency from audit records (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provisioner.core.governance.evidence import (
    QuarterError,
    latency_summary,
    leaver_latencies,
    percentile,
    quarter_bounds,
)


def test_quarter_bounds() -> None:
    assert quarter_bounds("2026-Q4") == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert quarter_bounds("2026-q1")[1] == datetime(2026, 4, 1, tzinfo=UTC)
    for bad in ("2026-Q5", "2026", "Q4-2026", "2026-Q0"):
        with pytest.raises(QuarterError):
            quarter_bounds(bad)


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def disable(run: str, at: str, role: str, **attrs: str) -> dict[str, object]:
    return {"kind": "change_applied", "run_id": run, "at": at, "target": "pg", "role": role,
            "change": {"kind": "alter_role", "params": {"login": False},
                       "reasons": [{"rule": "lifecycle:leaver", "text": "", "attributes": attrs}]}}


def test_leaver_latency_exact_and_upper_bound() -> None:
    records = list(enumerate([
        {"kind": "run_planned", "run_id": "r1", "at": "2026-11-02T08:00:00+00:00"},
        {"kind": "run_planned", "run_id": "r2", "at": "2026-11-02T09:00:00+00:00"},
        disable("r2", "2026-11-02T09:00:30+00:00", "bob", status="terminated"),
        disable("r2", "2026-11-02T09:00:40+00:00", "erin", leave_date="2026-11-02"),
        {"kind": "change_applied", "run_id": "r2", "at": "2026-11-02T09:00:50+00:00", "role": "x",
         "change": {"kind": "alter_role", "params": {"login": True}, "reasons": []}},
    ], 1))
    lats = {x.role: x for x in leaver_latencies(records)}
    assert set(lats) == {"bob", "erin"}
    assert lats["bob"].basis == "previous run" and lats["bob"].seconds == 3630.0
    assert lats["erin"].basis == "leave_date" and lats["erin"].seconds == 9 * 3600 + 40
    summary = latency_summary(list(lats.values()))
    assert summary["count"] == 2 and summary["p99_seconds"] == 9 * 3600 + 40
