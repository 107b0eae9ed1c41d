"""shortcircuit.digests_meanwhile: the catalog digests run beside the source read in
one background thread, then (in a warm process) the inspects of the targets whose digest
moved; a failure surfaces where the digest or the inspect is used, and leaving the
block always waits for the thread (no connection is shared across threads)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from provisioner.core.reconcile.shortcircuit import RunFacts, Verified
from provisioner.core.values.model import ActualState, DesiredState
from provisioner.core.values.plan import Plan
from provisioner.engine import shortcircuit
from provisioner.engine.warm import LastRun, WarmState
from provisioner.errors import TargetUnavailable


class _Target:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.threads, self.finished = fail, [], False

    def catalog_digest(self) -> str:
        self.threads.append(threading.current_thread().name)
        time.sleep(0.2)
        self.finished = True
        if self.fail:
            raise TargetUnavailable("target pg: catalog digest failed: gone")
        return "d1"


class _NoDigest:
    def catalog_digest(self) -> None:  # MariaDB: no catalog digest
        return None


class _Targets:
    def __init__(self, target: _Target) -> None:
        self.target, self.names = target, ["pg", "mysql"]

    def get(self, name: str) -> Any:
        return self.target if name == "pg" else _NoDigest()  # a target without a digest


def test_digests_run_in_the_background_and_are_taken_once() -> None:
    target = _Target()
    with shortcircuit.digests_meanwhile(_Targets(target), True) as meanwhile:  # type: ignore[arg-type]
        assert not target.finished  # entering the block did not wait for the query
        digests = meanwhile.digests
        assert digests() == {"pg": "d1", "mysql": None} and digests() == {"pg": "d1", "mysql": None}
        assert meanwhile.inspected() == {}  # no warm state: nothing inspected early
    assert len(target.threads) == 1 and target.threads[0].startswith("catalog-digest")


def test_a_failure_surfaces_where_used_and_the_block_waits_for_the_thread() -> None:
    target = _Target(fail=True)
    failing = shortcircuit.digests_meanwhile(_Targets(target), True)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="source read failed"), failing:
        raise RuntimeError("source read failed")
    assert target.finished  # waited: the connection is free when the run's error is handled
    meanwhile = shortcircuit.digests_meanwhile(_Targets(_Target(fail=True)), True)  # type: ignore[arg-type]
    with meanwhile as found, pytest.raises(TargetUnavailable, match="catalog digest failed"):
        found.digests()


def test_without_the_short_circuit_nothing_runs_until_asked() -> None:
    target = _Target()
    with shortcircuit.digests_meanwhile(_Targets(target), False) as meanwhile:  # type: ignore[arg-type]
        assert target.threads == []
        assert meanwhile.digests()["pg"] == "d1" and target.threads == [threading.current_thread().name]
        assert meanwhile.inspected() == {}


class _Inspected:
    """A target whose inspect is recorded (thread and ``reuse`` mapping) and may fail."""

    def __init__(self, name: str, digest: str, fail: bool = False) -> None:
        self.name, self.digest, self.fail = name, digest, fail
        self.inspects: list[tuple[str, Any]] = []
        self.asked: list[str | None] = []

    def catalog_digest(self) -> str:
        return self.digest

    def inspect(self, only: frozenset[str] | None = None, reuse: Any = None) -> ActualState:
        self.inspects.append((threading.current_thread().name, only))
        if self.fail:
            raise TargetUnavailable(f"target {self.name}: inspect failed: gone")
        return ActualState(target=self.name, roles={}, session_role="prov")

    def inspect_if_moved(self, digest: str | None, reuse: Any = None) -> tuple[str, ActualState | None]:
        self.asked.append(digest)
        return self.digest, None if digest == self.digest else self.inspect(reuse=reuse)


class _Both:
    def __init__(self, *targets: _Inspected) -> None:
        self.by_name = {t.name: t for t in targets}
        self.names = list(self.by_name)

    def get(self, name: str) -> Any:
        return self.by_name[name]


def _warm_after_a_run(digests: dict[str, str | None]) -> WarmState:
    """A warm state whose last full run (configuration "cfg") took ``digests`` before inspecting."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    facts = RunFacts(now, True, "m", "cfg", digests)
    actual = {n: ActualState(target=n, roles={}, session_role="prov") for n in digests}
    plan = Plan(created_at=now, config_digest="cfg", targets=(), identities_seen=0)
    warm = WarmState()
    warm.last = LastRun(
        "cfg", Verified(facts, (), frozenset(digests)), (), DesiredState({}, {}, frozenset()), actual, plan
    )
    return warm


def test_a_warm_run_inspects_each_moved_target_beside_the_source_read() -> None:
    moved, still = _Inspected("pg", "d2"), _Inspected("pg2", "e1")
    warm = _warm_after_a_run({"pg": "d1", "pg2": "e1"})
    early = shortcircuit.digests_meanwhile(_Both(moved, still), True, warm, "cfg")  # type: ignore[arg-type]
    with early as meanwhile:
        got = meanwhile.inspected()
        assert set(got) == {"pg"}, "only the target whose digest moved is inspected early"
        assert moved.inspects[0][0].startswith("catalog-digest") and still.inspects == []
        facts = RunFacts(datetime(2026, 12, 7, tzinfo=UTC), False, "m", "cfg", meanwhile.digests())
        cfg: Any = SimpleNamespace(digest="cfg")
        actual, reused = shortcircuit.inspect(cfg, warm, facts, _Both(moved, still), got)  # type: ignore[arg-type]
    assert actual["pg"] is got["pg"] and len(moved.inspects) == 1, "the early inspect is the run's"
    assert still.inspects == [(threading.current_thread().name, frozenset())], "reused: its sessions only"
    assert set(reused) == {"pg2"}
    assert moved.asked == ["d1"] and still.asked == ["e1"], "each read compares with its last run's digest"


def test_a_target_the_last_run_has_no_state_of_is_always_read() -> None:
    fresh = _Inspected("pg3", "f1")
    warm = _warm_after_a_run({"pg": "d1"})
    with shortcircuit.digests_meanwhile(_Both(fresh), True, warm, "cfg") as meanwhile:  # type: ignore[arg-type]
        assert set(meanwhile.inspected()) == {"pg3"} and fresh.asked == [None]


def test_another_configuration_inspects_everything_early() -> None:
    a, b = _Inspected("pg", "d1"), _Inspected("pg2", "e1")
    warm = _warm_after_a_run({"pg": "d1", "pg2": "e1"})
    with shortcircuit.digests_meanwhile(_Both(a, b), True, warm, "reloaded") as meanwhile:  # type: ignore[arg-type]
        assert set(meanwhile.inspected()) == {"pg", "pg2"}


def test_an_early_inspect_failure_is_raised_where_the_run_inspects() -> None:
    broken, fine = _Inspected("pg", "d2", fail=True), _Inspected("pg2", "e2")
    warm = _warm_after_a_run({"pg": "d1", "pg2": "e1"})
    with shortcircuit.digests_meanwhile(_Both(broken, fine), True, warm, "cfg") as meanwhile:  # type: ignore[arg-type]
        assert meanwhile.digests() == {"pg": None, "pg2": "e2"}, "a failed read has no digest; the other has"
        got = meanwhile.inspected()
        assert isinstance(got["pg"], TargetUnavailable) and isinstance(got["pg2"], ActualState)
        facts = RunFacts(datetime(2026, 12, 7, tzinfo=UTC), False, "m", "cfg", meanwhile.digests())
        cfg: Any = SimpleNamespace(digest="cfg")
        with pytest.raises(TargetUnavailable, match="inspect failed"):
            shortcircuit.inspect(cfg, warm, facts, _Both(broken, fine), got)  # type: ignore[arg-type]
