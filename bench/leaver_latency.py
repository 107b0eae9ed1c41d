"""Benchmark: leaver latency with 1,000 ordinary changes and one poisoned change (issue 14).

A private slapd holds N people (default 600); the first sync provisions them
(least-privilege PostgreSQL login, brownfield business roles created first by a
"DBA").  Then, at one instant, the directory changes:

* ~330 joiners are added (each a CREATE ROLE and two or three GRANTs): >= 1,000
  ordinary changes;
* one trader is terminated (the leaver);
* one joiner is poisoned: between plan and apply a DBA creates a role with the
  joiner's name, so that its CREATE ROLE fails at apply (the plan could not see it).

One apply run follows.  Printed: the number of changes, the apply time, the
changes that did not happen, and the leaver latency -- from the directory change
to the moment PostgreSQL shows the leaver NOLOGIN (read from the audit record of
the committed NOLOGIN and checked in the catalog).  Before issue 14 the poisoned
CREATE rolled back the whole transaction: the leaver kept LOGIN run after run.
Now the leaver is disabled in the removals phase, which commits before any create,
so the latency is at most one run interval plus this apply's time.

    .venv/bin/python -m bench.leaver_latency [N_PEOPLE] [N_JOINERS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from psycopg import sql

from bench.ldap_fixture import PEOPLE, load_directory
from provisioner.config import load_config
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.run import PlanOutcome, apply_run
from provisioner.errors import ApplyFailed
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import make_setup
from tests.support.slapd import Record

RULES = """
[[rule]]
id = "traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when = {{ attr = "department", equals = "Trading" }}

[[rule]]
id = "ops"
description = "operations"
grant = ["{p}ops_settlement", "{p}trade_reader"]
when = {{ attr = "department", equals = "Operations" }}

[[rule]]
id = "dept"
description = "department roles"
grant = ["{p}dept_{{department}}"]
when = {{ attr = "employee_type", one_of = ["employee", "contractor", "intern"] }}
"""
SAFETY = "[safety]\nmax_revocation_share = 1.0\nmax_mover_share = 1.0\nmax_identity_drop = 1.0\n"


def _admin(statement: str, *names: str) -> None:
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL(statement).format(*(sql.Identifier(n) for n in names)))


def _login(role: str) -> bool | None:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return None if row is None else bool(row[0])


def _run(cfg_path: Path, poison: str | None = None) -> dict[str, Any]:
    cfg = load_config(cfg_path)
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    ctx = RunContext(datetime.now(UTC), "bench", "schedule", store=store)

    def namesake(outcome: PlanOutcome) -> None:  # the DBA, between plan and apply
        if poison is not None:
            _admin("CREATE ROLE {} LOGIN", poison)

    started = time.perf_counter()
    failed: list[str] = []
    try:
        with structlog.testing.capture_logs(), Targets(cfg) as targets:
            try:
                plan = apply_run(cfg, ctx, targets, on_planned=namesake)
                changes = len(plan.changes)
            except ApplyFailed as exc:
                failed = str(exc).splitlines()[1:]
                changes = -1
        seconds = time.perf_counter() - started
        disabled = {
            r.content["role"]: datetime.fromisoformat(r.content["at"])
            for r in store.iter_audit(ctx.run_id)
            if r.content["kind"] == "change_applied"
            and (r.content.get("change") or {}).get("params", {}).get("login") is False
        }
        planned = sum(
            len((r.content.get("after") or {}).get("changes", []))
            for r in store.iter_audit(ctx.run_id)
            if r.content["kind"] == "apply_intent"
        )
    finally:
        store.close()
    return {"seconds": seconds, "changes": changes if changes >= 0 else planned, "failed": failed, "nologin": disabled}


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 600
    joiners = int(argv[1]) if len(argv) > 1 else 330
    server, _ = load_directory(n, 10)
    prefix = pg.new_prefix()
    try:
        for role in ("trade_executor", "trade_reader", "ops_settlement"):  # brownfield business roles
            _admin("CREATE ROLE {} NOLOGIN", prefix + role)
        with tempfile.TemporaryDirectory() as tmp:
            source = server.source_config(name=f"bench-{prefix.rstrip('_')}", page_size=1000, timeout=60.0)
            cfg_path = make_setup(Path(tmp), source, prefix, rules=RULES, extra=SAFETY).path
            first = _run(cfg_path)
            leaver = _a_trader(prefix)
            leaver_uid = leaver[len(prefix) :]
            # the directory changes; the leaver's last, and the clock starts there
            server.add(_joiner(j) for j in range(joiners))
            changed_at = datetime.now(UTC)
            server.modify(f"uid={leaver_uid},{PEOPLE}", hrStatus="terminated")
            poisoned = prefix + "joiner00000"
            run = _run(cfg_path, poison=poisoned)
            assert _login(leaver) is False, "the leaver must be NOLOGIN after the run"
            latency = (run["nologin"][leaver] - changed_at).total_seconds()
    finally:
        server.cleanup()
        pg.drop_roles_with_prefix(prefix)
    print(f"people {n}, first sync {first['changes']} changes in {first['seconds']:.2f} s")
    print(f"run: {run['changes']} changes planned (1 leaver, {joiners} joiners, 1 poisoned) in {run['seconds']:.2f} s")
    print(f"changes that did not happen: {len(run['failed'])}")
    for line in run["failed"]:
        print(f"  {line}")
    print(f"leaver latency (directory change -> NOLOGIN committed): {latency:.2f} s")
    print(f"bound: one run interval (0 here: the run starts at once) + the run's time ({run['seconds']:.2f} s)")
    assert latency <= run["seconds"] + 1.0, "the leaver waited for more than this run"


def _a_trader(prefix: str) -> str:
    """A provisioned trader who can log in: the leaver."""
    with pg.admin_connect() as conn:
        row = conn.execute(
            "SELECT m.rolname::text FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member"
            " JOIN pg_roles g ON g.oid = am.roleid WHERE g.rolname = %s AND m.rolcanlogin ORDER BY 1 LIMIT 1",
            (prefix + "trade_executor",),
        ).fetchone()
    assert row is not None, "the synthetic directory has no trader"
    return str(row[0])


def _joiner(j: int) -> Record:
    uid = f"joiner{j:05d}"
    return (
        f"uid={uid},{PEOPLE}",
        {
            "objectClass": ["inetOrgPerson", "hrPerson"],
            "uid": uid,
            "cn": uid,
            "sn": uid,
            "departmentNumber": "Trading" if j % 2 else "Operations",
            "title": "Equity Trader",
            "employeeType": "employee",
            "hrStatus": "active",
        },
    )


if __name__ == "__main__":
    main(sys.argv[1:])
