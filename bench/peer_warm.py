"""The daemon's warm path for ``bench/peer_realistic.py``: one long-lived process.

``python -m bench.peer_warm CONFIG`` loads the configuration and the mappings as the
daemon does (``daemon.service.load_all``), opens the state store, and builds the
daemon's own :class:`~provisioner.daemon.runner.Runner` with one
:class:`~provisioner.engine.warm.WarmState`.  Each line ``run`` on stdin makes one
scheduled run exactly as the daemon makes it (``Runner.run("apply", "schedule")``:
GC paused for the run, the run's history and audit trail, a full collection after
it) and prints one JSON line: wall seconds of the whole ``Runner.run`` call (the
collection after the run included; ``gc_seconds``: the cyclic GC's share of it),
changes, the peak RSS of that run
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``), the RSS after it and
the process's lifetime peak.  Process start and loading are printed once at start.

``python -m bench.peer_warm --once CONFIG`` is the one-shot process instead: one
``apply`` as the CLI makes it (state store: incremental reads, run history, audit
trail), importing only what the CLI imports (no test support), figures as JSON.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def main(cfg_path: str) -> None:
    import structlog

    from provisioner.daemon.ha import Leadership
    from provisioner.daemon.metrics import Metrics
    from provisioner.daemon.runner import Runner
    from provisioner.daemon.service import load_all
    from provisioner.engine.installation import open_store
    from provisioner.engine.warm import WarmState

    writes: list[int] = []

    def keep(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        if event.get("event") == "target_applied":
            writes.append(int(event.get("statements", 0)))
        raise structlog.DropEvent

    loaded = load_all(cfg_path)  # configures logging as the daemon does: replaced below
    structlog.configure(processors=[keep])
    store = open_store(loaded.cfg)
    runner = Runner(lambda: loaded, store, Metrics(), Leadership(loaded.cfg), threading.Event(), WarmState())
    collecting: list[float] = [0.0, 0.0]  # start of the collection in progress, seconds collected

    def timed_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collecting[1] += time.perf_counter() - collecting[0]

    gc.callbacks.append(timed_gc)
    print(json.dumps({"ready": time.perf_counter() - STARTED}), flush=True)
    profiles = os.environ.get("PEER_WARM_PROFILE")  # a directory: one cProfile dump per run
    # (from the run numbered $PEER_WARM_PROFILE_FROM on, 0 = the first sync)
    for number, line in enumerate(sys.stdin):
        if line.strip() != "run":
            break
        writes.clear()
        _reset_peak()
        collecting[1] = 0.0
        started = time.perf_counter()
        if profiles and number >= int(os.environ.get("PEER_WARM_PROFILE_FROM", "0")):
            profiler = cProfile.Profile()
            result = profiler.runcall(runner.run, "apply", "schedule")
            profiler.dump_stats(f"{profiles}/warm-{number}.prof")
        else:
            result = runner.run("apply", "schedule")
        took = time.perf_counter() - started
        meta = result.plan.meta
        how = "short_circuit" if "short_circuit" in meta else "reused_actual" if "reused_actual" in meta else ""
        print(json.dumps({
            "seconds": took,
            "gc_seconds": collecting[1],
            "changes": len(result.plan.changes),
            "writes": sum(writes),
            "peak_mib": _status_mib("VmHWM"),
            "rss_mib": _status_mib("VmRSS"),
            "lifetime_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "skipped": how,
        }), flush=True)
    store.close()


def once(cfg_path: str) -> None:
    """One ``provisioner apply`` in this process, as the CLI runs it (state store:
    incremental directory reads, run history, audit trail); prints its figures as JSON."""
    import structlog

    from provisioner.config import load_config
    from provisioner.engine.connections import Targets
    from provisioner.engine.context import RunContext
    from provisioner.engine.installation import open_store
    from provisioner.engine.record import recorded_run
    from provisioner.engine.run import apply_run

    writes: list[int] = []

    def keep(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        """As the CLI at log level warning: nothing printed or kept, but the write count."""
        if event.get("event") == "target_applied":
            writes.append(int(event.get("statements", 0)))
        raise structlog.DropEvent

    structlog.configure(processors=[keep])
    cfg = load_config(Path(cfg_path))
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, reason="bench")
    started = time.perf_counter()
    with recorded_run(ctx, "apply", cfg), Targets(cfg) as targets:
        plan = apply_run(cfg, ctx, targets)
        total = sum(getattr(targets.get(n), "statements_executed", 0) for n in targets.names)
    store.close()
    figures = {"seconds": time.perf_counter() - started, "changes": len(plan.changes), "statements": total}
    print(json.dumps({**figures, "writes": sum(writes)}))


if __name__ == "__main__":
    if sys.argv[1] == "--once":
        once(sys.argv[2])
    else:
        main(sys.argv[1])
