"""End-to-end incremental runs in a warm, daemon-like process (issue 9).

N synthetic users (default 100,000) in a real slapd (with syncprov, aged
modifyTimestamps), reconciled into the real PostgreSQL; then, in the same process
with one state store (so the incremental LDAP reader keeps its snapshot in memory,
as the daemon does): a full no-op run (short-circuit not allowed), the full run
that records the short-circuit's facts, short-circuited no-op runs, a run after
100 users changed in the directory (50 moved department, 50 terminated: it plans
against the reused actual state and applies), the no-op after it (inspects
again), and the same 100-changed run with ``deletion_scan_every = "1h"``; and the
catalog digest query alone.  Prints wall times and ratios measured in one run.

    .venv/bin/python -m bench.noop            # 100,000 users
    .venv/bin/python -m bench.noop 10000
"""

from __future__ import annotations

import random
import re
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bench.incremental import _change, load_aged
from bench.sync import _setup
from provisioner.config import load_config
from provisioner.core.values.plan import Plan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.gcpause import Collector, paused_gc
from provisioner.engine.run import apply_run
from provisioner.engine.warm import WarmState
from provisioner.store.state import StateStore
from tests.support import pg


def _run(cfg_path: Path, store: StateStore, warm: WarmState | None, collector: Collector) -> tuple[float, Plan, float]:
    """One run as the daemon makes it (GC paused for the run, the daemon's collection after
    it): wall seconds, the plan, and the collection's seconds."""
    cfg = load_config(cfg_path)
    ctx = RunContext(datetime.now(UTC), "bench", "schedule", store=store, warm=warm)
    started = time.perf_counter()
    with paused_gc(), Targets(cfg) as targets:
        plan = apply_run(cfg, ctx, targets)
    took = time.perf_counter() - started
    return took, plan, collector.collect()


def _digest(cfg_path: Path) -> float:
    with Targets(load_config(cfg_path)) as targets:
        target = targets.get("pg")
        target.catalog_digest()  # type: ignore[attr-defined]  # connect first
        started = time.perf_counter()
        target.catalog_digest()  # type: ignore[attr-defined]
        return time.perf_counter() - started


def _hourly(cfg: Path) -> Path:
    """The same configuration with ``deletion_scan_every = "1h"`` on the source."""
    text, count = re.subn(r"(?m)^deletion_scan_every = .*$", 'deletion_scan_every = "1h"', cfg.read_text())
    assert count == 1, "the bench's source table changed shape"
    hourly = cfg.with_name("hourly.toml")
    hourly.write_text(text)
    return hourly


def measure(n: int) -> None:
    server, load = load_aged(n)
    prefix = pg.new_prefix()
    picks = random.Random(7).sample(range(n), 300)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = _setup(Path(tmp), server, prefix)
            store = StateStore(f"sqlite:///{Path(tmp) / 'state.db'}")
            daemon = WarmState()  # the daemon's, kept across its runs; None = a CLI run
            collector = Collector()  # the daemon's collection after each run
            rows = [("first run (creates every role)", *_run(cfg, store, None, collector))]
            rows.append(("no-op, full path (inspect + diff)", *_run(cfg, store, None, collector)))
            rows.append(("no-op, full path, records facts", *_run(cfg, store, daemon, collector)))
            rows.append(("no-op, short-circuited", *_run(cfg, store, daemon, collector)))
            rows.append(("no-op, short-circuited again", *_run(cfg, store, daemon, collector)))
            _change(server, picks[:100])
            rows.append(("100 changed (deletion scan)", *_run(cfg, store, daemon, collector)))
            rows.append(("no-op after it (inspects again)", *_run(cfg, store, daemon, collector)))
            rows.append(("no-op, short-circuited", *_run(cfg, store, daemon, collector)))
            hourly = _hourly(cfg)
            _run(hourly, store, daemon, collector)  # another configuration: its first full run, not shown
            _change(server, picks[100:200])
            rows.append(("100 changed, deletion scan hourly", *_run(hourly, store, daemon, collector)))
            rows.append(("no-op after it (inspects again)", *_run(hourly, store, daemon, collector)))
            _change(server, picks[200:])
            rows.append(("100 more changed, scan hourly", *_run(hourly, store, daemon, collector)))
            digest = _digest(cfg)
            store.close()
    finally:
        server.cleanup()
        pg.drop_roles_with_prefix(prefix)
    full = rows[1][1]
    print(f"\nN = {n:,} users (slapadd {load:.1f}s, not part of a run)")
    print(f"  {'run':36} {'wall s':>7} {'ratio':>7}  changes  {'GC after':>8}  skipped")
    for label, took, p, gc_s in rows:
        how = "short-circuit" if "short_circuit" in p.meta else "reused actual" if "reused_actual" in p.meta else ""
        print(f"  {label:36} {took:7.2f}  x{took / full:5.2f}  {len(p.changes):7}  {gc_s:8.2f}  {how}")
    print(f"  catalog digest query alone: {digest:.3f}s (x{digest / full:.3f} of the full no-op)")
    print(f"  peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main(argv: list[str]) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    for n in [int(a) for a in argv] or [100_000]:
        measure(n)


if __name__ == "__main__":
    main(sys.argv[1:])
