"""provisioner's first sync of the realistic directory, alone, for profiling and A/B runs.

The directory, mapping and configuration of ``bench/peer_realistic.py`` (one slapd
loaded once); each round creates a fresh database and role prefix and runs
``provisioner apply`` in a fresh process (as the CLI runs it: SQLite state store,
audit trail), optionally under cProfile, then drops what it created.  Prints wall seconds,
the worker's CPU seconds (user + system: steadier than wall on a shared machine), peak RSS.

    .venv/bin/python -m bench.first_sync 10000
    .venv/bin/python -m bench.first_sync 10000 --profile /tmp/first.prof   # CPU seconds
    .venv/bin/python -m bench.first_sync 10000 --rounds 2 --tree /tmp/base --tree .

``--tree DIR`` (repeatable): a source tree (a ``git archive`` of another commit) run
with ``PYTHONPATH=DIR``; the trees alternate within each round (interleaved A/B).
``--stages``: print the resident and peak memory at each stage of the run (stderr).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.peer_realistic import drop_database, loaded_directory, make_database, ours_config
from tests.support import pg


def stage_worker(cfg: str) -> None:
    """The one-shot worker (``bench.peer_warm.once``) with the process's resident and peak
    MiB printed around each stage."""
    import resource
    import time

    import provisioner.engine.execute as execute_module
    import provisioner.engine.run as run_module
    from bench.peer_warm import once as ours_worker

    started = time.perf_counter()

    def rss() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

    def wrap(module: Any, name: str) -> None:
        inner = getattr(module, name)

        def staged(*args: Any, **kw: Any) -> Any:
            try:
                return inner(*args, **kw)
            finally:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
                print(f"  after {name:16} {time.perf_counter() - started:6.1f} s  rss {rss():5} MiB  peak {peak:5} MiB",
                      file=sys.stderr)

        setattr(module, name, staged)

    for name in ("read_sources", "compute_desired", "make_plan", "plan_run", "execute"):
        wrap(run_module, name)
    wrap(execute_module, "verify")
    ours_worker(cfg)


def one(server: Any, n_tmp: Path, tree: Path, profile: str | None, stages: bool = False) -> dict[str, Any]:
    p = pg.new_prefix()
    db = f"{p}db"
    work = Path(tempfile.mkdtemp(prefix="first-sync-", dir=n_tmp))
    try:
        make_database(db, f"{p}app_owner")
        cfg = ours_config(work, server, p, db)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        worker = ["bench.first_sync", "--stage-worker"] if stages else ["bench.peer_warm", "--once"]
        if profile:  # CPU time, not wall: on a shared machine wall time is mostly waiting for a core
            worker = ["bench.first_sync", "--profile-worker", profile]
        cmd = [sys.executable, "-m", *worker, str(cfg)]
        with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
            res = subprocess.run(
                ["/usr/bin/time", "-f", "%e %M %U %S", "-o", out.name, *cmd],
                capture_output=True, text=True, env=env, cwd=tree, check=False,
            )
            if res.returncode != 0:
                raise RuntimeError(f"worker failed ({res.returncode}): {res.stderr[-3000:]}")
            wall_s, kib, user, system = out.read().split()[-4:]
        wall, mib, cpu, output = float(wall_s), int(kib) / 1024, float(user) + float(system), res.stdout + res.stderr
        lines = output.strip().splitlines()
        figures = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
        if stages:
            print("\n".join(line for line in lines if line.startswith("  after")), flush=True)
        return {"tree": str(tree), "wall": wall, "cpu": round(cpu, 2), "mib": round(mib), **figures}
    finally:
        drop_database(db)
        pg.drop_roles_with_prefix(p)


def main(argv: list[str]) -> None:
    n = next((int(a) for a in argv if a.isdigit()), 10_000)
    trees = [Path(argv[i + 1]).resolve() for i, a in enumerate(argv) if a == "--tree"] or [Path.cwd()]
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 1
    profile = argv[argv.index("--profile") + 1] if "--profile" in argv else None
    with loaded_directory(n, "first-sync-") as (tmp, server, _changes, _stats):
        for r in range(rounds):
            for tree in trees:
                result = one(server, tmp, tree, profile, "--stages" in argv)
                print(json.dumps({"round": r, **result}), flush=True)


def profile_worker(out: str, cfg: str) -> None:
    """The one-shot worker (``bench.peer_warm.once``) under cProfile counting CPU seconds (``time.process_time``)."""
    import cProfile
    import time

    from bench.peer_warm import once as ours_worker

    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(ours_worker, cfg)
    profiler.dump_stats(out)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--profile-worker":
        profile_worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 2 and sys.argv[1] == "--stage-worker":
        stage_worker(sys.argv[2])
    else:
        main(sys.argv[1:])
