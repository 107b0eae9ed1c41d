"""shortcircuit.digests_meanwhile: the catalog digests run beside the source read in
one background thread; a failure surfaces where the digest is used, and leaving the
block always waits for the thread (no connection is shared across threads)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from provisioner.engine import shortcircuit
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
    with shortcircuit.digests_meanwhile(_Targets(target), True) as digests:  # type: ignore[arg-type]
        assert not target.finished  # entering the block did not wait for the query
        assert digests() == {"pg": "d1", "mysql": None} and digests() == {"pg": "d1", "mysql": None}
    assert len(target.threads) == 1 and target.threads[0].startswith("catalog-digest")


def test_a_failure_surfaces_where_used_and_the_block_waits_for_the_thread() -> None:
    target = _Target(fail=True)
    failing = shortcircuit.digests_meanwhile(_Targets(target), True)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="source read failed"), failing:
        raise RuntimeError("source read failed")
    assert target.finished  # waited: the connection is free when the run's error is handled
    meanwhile = shortcircuit.digests_meanwhile(_Targets(_Target(fail=True)), True)  # type: ignore[arg-type]
    with meanwhile as digests, pytest.raises(TargetUnavailable, match="catalog digest failed"):
        digests()


def test_without_the_short_circuit_nothing_runs_until_asked() -> None:
    target = _Target()
    with shortcircuit.digests_meanwhile(_Targets(target), False) as digests:  # type: ignore[arg-type]
        assert target.threads == []
        assert digests()["pg"] == "d1" and target.threads == [threading.current_thread().name]
