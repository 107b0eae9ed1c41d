"""Sync benchmark: a synthetic directory of N users in a real slapd, reconciled
into the real PostgreSQL: first sync, no-op sync, and a sync after 1% of users
moved department and 1% left.  Prints wall time, peak memory (RSS of a fresh
worker process per N) and statements issued (all / writes).

    .venv/bin/python -m bench.sync                 # N = 1,000 and 10,000
    .venv/bin/python -m bench.sync 1000 10000 50000 100000
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from bench.ldap_fixture import PEOPLE, _uid, load_directory
from provisioner.config import load_config
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.run import apply_run
from tests.support import pg
from tests.support.e2e import make_setup

RULES = """
[[rule]]
id = "traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "trader" }} ]

[[rule]]
id = "approvers"
description = "approvers"
grant = ["{p}trade_approver"]
when = {{ attr = "title", one_of = ["Head of Trading", "Trade Approver"] }}

[[rule]]
id = "ops"
description = "operations"
grant = ["{p}ops_settlement", "{p}trade_reader"]
when = {{ attr = "department", equals = "Operations" }}

[[rule]]
id = "compliance"
description = "compliance"
grant = ["{p}compliance_reader"]
when = {{ attr = "department", equals = "Compliance" }}

[[rule]]
id = "dept"
description = "department roles"
grant = ["{p}dept_{{department}}"]
when = {{ attr = "employee_type", one_of = ["employee", "contractor"] }}

[[rule]]
id = "group-rule"
description = "a directory group"
grant = ["{p}grp_member"]
when = {{ group = "grp00001" }}
"""


# The churn phase deliberately takes access from 2% of users: above the breaker's 500 at 50,000.
BENCH_SAFETY = "[safety]\nmax_revocations = 1000000\nmax_revocation_share = 1.0\n"


def _setup(tmp: Path, server: Any, prefix: str) -> Path:
    """The tests' least-privilege setup, with the bench's rules, source and safety limits."""
    source = server.source_config(name=f"bench-{prefix.rstrip('_')}", page_size=1000, timeout=60.0)
    return make_setup(tmp, source, prefix, rules=RULES, extra=BENCH_SAFETY).path


def _sync(cfg_path: Path) -> dict[str, float]:
    cfg = load_config(cfg_path)
    ctx = RunContext.manual(cfg, None)
    started = time.perf_counter()
    with structlog.testing.capture_logs() as logs, Targets(cfg) as targets:
        plan = apply_run(cfg, ctx, targets)
        total = sum(getattr(targets.get(n), "statements_executed", 0) for n in targets.names)
    writes = sum(e.get("statements", 0) for e in logs if e.get("event") == "target_applied")
    return {
        "seconds": time.perf_counter() - started,
        "changes": len(plan.changes),
        "statements": total,
        "writes": writes,
    }


def _churn(server: Any, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    picks = rng.sample(range(n), max(2, n // 50))
    half = len(picks) // 2
    for i in picks[:half]:
        server.modify(f"uid={_uid(i)},{PEOPLE}", departmentNumber="Compliance", title="Compliance Analyst")
    for i in picks[half:]:
        server.modify(f"uid={_uid(i)},{PEOPLE}", hrStatus="terminated")


def worker(n: int) -> dict[str, Any]:
    server, load = load_directory(n, max(1, min(3000, n // 5)))
    prefix = pg.new_prefix()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = _setup(Path(tmp), server, prefix)
            first = _sync(cfg)
            noop = _sync(cfg)
            _churn(server, n)
            churn = _sync(cfg)
    finally:
        server.cleanup()
        pg.drop_roles_with_prefix(prefix)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "slapadd_s": load, "first": first, "noop": noop, "churn": churn, "peak_mib": peak_mib}


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1000, 10000]
    print(f"{'N':>8} {'phase':>6} {'wall s':>8} {'changes':>8} {'stmts':>8} {'writes':>8}   per-user ms")
    results = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "bench.sync", "--worker", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        for phase in ("first", "noop", "churn"):
            m = r[phase]
            print(
                f"{n:>8} {phase:>6} {m['seconds']:>8.2f} {m['changes']:>8} {m['statements']:>8} "
                f"{m['writes']:>8}   {1000 * m['seconds'] / n:.3f}"
            )
        print(f"{n:>8} peak RSS {r['peak_mib']:.0f} MiB (slapadd load {r['slapadd_s']:.1f}s, not part of a sync)")
    if len(results) > 1:
        a, b = results[0], results[-1]
        scale = b["n"] / a["n"]
        for phase in ("first", "noop", "churn"):
            ratio = b[phase]["seconds"] / a[phase]["seconds"]
            print(
                f"scaling {a['n']}->{b['n']} users (x{scale:.0f}): {phase} time x{ratio:.1f} "
                f"({'linear or better' if ratio <= scale * 1.25 else 'SUPERLINEAR'})"
            )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]))))
    else:
        main(sys.argv[1:])
