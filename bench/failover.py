"""HA failover time: two daemon replicas share a PostgreSQL state database and one
target; the leader is killed with SIGKILL and the time until the follower's
``provisioner_leader`` gauge reads 1 (and until its takeover run has finished) is
measured; the killed replica is restarted as the new follower and the next round
kills the new leader.  Scheduled runs are an hour apart, so only the leader-lock
loop (``daemon.leader_retry``) can explain a fast takeover.

    .venv/bin/python -m bench.failover            # 5 rounds, leader_retry = 1s
    .venv/bin/python -m bench.failover 10 2s
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from provisioner.config import LdifSourceConfig
from tests.daemon.support import DaemonProc, daemonize, free_port, wait_for
from tests.support import pg
from tests.support.e2e import make_setup

TOKEN = "bench-trigger-token-0123456789abcdefXYZ"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "directory.ldif"


def leader(d: DaemonProc, target: str) -> bool:
    try:
        _, body = d.request("GET", "/metrics")
    except OSError:
        return False
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "provisioner_leader" and s.labels.get("target") == target:
                return s.value == 1.0
    return False


def takeovers(d: DaemonProc) -> int:
    return sum(1 for e in d.events() if e.get("event") == "run_finished" and e.get("job") == "reconcile")


def main(rounds: int, retry: str) -> None:
    prefix = pg.new_prefix()
    state = f"prov_state_{prefix.rstrip('_')}"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(state)))
    params = dict(p.split("=", 1) for p in pg.admin_dsn().split())
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    url = f"postgresql://{params.get('user', 'postgres')}@{host}:{port}/{state}"
    procs: list[DaemonProc] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            setup = make_setup(base, LdifSourceConfig(type="ldif", name="bench", path=str(EXAMPLE)), prefix)
            port_a = daemonize(setup, state_url=url, interval="1h", extra=f'leader_retry = "{retry}"')
            target = f"{prefix}pg"
            configs = {port_a: setup.path}
            port_b = free_port()
            configs[port_b] = base / "config-b.toml"
            configs[port_b].write_text(setup.path.read_text().replace(f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"))

            def start(port: int, n: int) -> DaemonProc:
                d = DaemonProc(
                    configs[port], port, base / f"d{port}-{n}.log", "bench-trigger-token-0123456789abcdefXYZ"
                )
                procs.append(d)
                return d.wait_up()

            current = start(port_a, 0)
            wait_for("the first leader", lambda: leader(current, target))
            other = start(port_b, 0)
            wait_for("the follower's first run", lambda: takeovers(other) >= 1)
            figures: list[tuple[float, float]] = []
            for n in range(1, rounds + 1):
                before = takeovers(other)
                current.kill()
                killed = time.monotonic()
                wait_for("the follower's gauge", lambda o=other: leader(o, target), timeout=60, every=0.05)
                lead = time.monotonic() - killed
                wait_for("the takeover run", lambda o=other, b=before: takeovers(o) > b, timeout=60, every=0.05)
                ran = time.monotonic() - killed
                figures.append((lead, ran))
                print(f"round {n}: leader after {lead:.2f}s, takeover run finished after {ran:.2f}s")
                current, other = other, start(current.port, n)
                wait_for("the new follower's first run", lambda o=other: takeovers(o) >= 1)
            leads = [f[0] for f in figures]
            runs = [f[1] for f in figures]
            print(
                f"failover (leader_retry {retry}, {rounds} rounds): leader median {statistics.median(leads):.2f}s "
                f"max {max(leads):.2f}s; takeover run median {statistics.median(runs):.2f}s max {max(runs):.2f}s"
            )
    finally:
        for d in procs:
            d.kill()
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(state)))
        pg.drop_roles_with_prefix(prefix)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, sys.argv[2] if len(sys.argv) > 2 else "1s")
