"""The pure no-op short-circuit decision (provisioner.core.reconcile.shortcircuit)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from provisioner.core.reconcile.shortcircuit import RunFacts, Verified, decide

T0 = datetime(2031, 1, 1, 9, tzinfo=UTC)
FACTS = RunFacts(T0, True, "m1", "c1", {"pg": "d1"})
LAST = Verified(FACTS, (datetime(2031, 1, 1, 17, tzinfo=UTC),), frozenset({"pg"}))
PG = frozenset({"pg"})


def later(**kw: object) -> RunFacts:
    return replace(FACTS, at=datetime(2031, 1, 1, 10, tzinfo=UTC), **kw)  # type: ignore[arg-type]


def test_everything_unchanged_short_circuits() -> None:
    assert decide(LAST, later(), PG) == ""


def test_each_condition_forces_the_full_path() -> None:
    assert decide(None, later(), PG) == "no earlier run in this process"
    assert decide(LAST, later(sources_unchanged=False), PG) == "a source returned a new snapshot"
    assert decide(LAST, later(mappings_digest="m2"), PG) == "mappings changed"
    assert decide(LAST, later(config_digest="c2"), PG) == "configuration changed"
    assert decide(LAST, replace(FACTS, at=datetime(2031, 1, 2, 1, tzinfo=UTC)), PG) == "the UTC date changed"
    assert decide(LAST, replace(FACTS, at=datetime(2030, 12, 31, tzinfo=UTC)), PG) == "the UTC date changed"
    crossed = replace(FACTS, at=datetime(2031, 1, 1, 17, tzinfo=UTC))
    assert decide(LAST, crossed, PG) == "a lifecycle instant passed"
    assert decide(LAST, later(catalog_digests={"pg": "d2"}), PG) == "target 'pg' catalog changed"
    assert decide(LAST, later(catalog_digests={"pg": None}), PG) == "target 'pg' catalog changed"
    assert decide(replace(LAST, quiet_targets=frozenset()), later(), PG).startswith("a target had work")
    assert decide(LAST, later(), frozenset({"pg", "other"})).startswith("a target had work")
    assert decide(LAST, later(), frozenset()).startswith("a target had work")


def test_a_new_day_in_the_lifecycle_timezone_forces_the_full_path() -> None:
    """SoD exception expiry and the rules' today are dates in [lifecycle] timezone: midnight in
    New York (05:00 UTC) changes them within one UTC date, and the last empty plan may not stand."""
    last = replace(LAST, facts=replace(FACTS, at=datetime(2031, 1, 1, 4, tzinfo=UTC), day=date(2030, 12, 31)))
    assert decide(last, later(day=date(2030, 12, 31)), PG) == ""
    assert decide(last, later(day=date(2031, 1, 1)), PG) == "the date in [lifecycle] timezone changed"
