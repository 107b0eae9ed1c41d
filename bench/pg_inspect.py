"""PostgreSQL inspect at scale: PostgresTarget.inspect() over N managed login
roles (default 100,000) with markers and 2-3 memberships each, the catalog
reading a no-op run does before it can plan.

Prints the time of the three catalog queries and of building the roles in
Python (``pg_inspect.build_roles``), measured in one run; roles are created with
a unique prefix and dropped afterwards.

    .venv/bin/python -m bench.pg_inspect            # 100,000 roles
    .venv/bin/python -m bench.pg_inspect 10000
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
import uuid

from provisioner.config import PostgresTargetConfig
from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import Marker, RoleKind
from provisioner.targets import pg_inspect
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg

BATCH = 2000


def create(prefix: str, n: int) -> float:
    started = time.perf_counter()
    groups = [f"{prefix}g{k}" for k in range(10)]
    with pg.admin_connect() as conn:
        gmark = marker_codec.encode(Marker(RoleKind.GROUP))
        for g in groups:
            conn.execute(f'CREATE ROLE "{g}" NOLOGIN')
            conn.execute(f"COMMENT ON ROLE \"{g}\" IS '{gmark}'")
        conn.commit()
        for lo in range(0, n, BATCH):
            statements = []  # bench-generated names only (prefix + digits): no quoting issues
            for i in range(lo, min(n, lo + BATCH)):
                name = f"{prefix}u{i:06d}"
                mark = marker_codec.encode(Marker(RoleKind.USER, f"id-{i}", "bench"))
                statements.append(f'CREATE ROLE "{name}" LOGIN; COMMENT ON ROLE "{name}" IS \'{mark}\';')
                for g in sorted({groups[i % 10], groups[(i * 7) % 10], groups[0]}):
                    statements.append(f'GRANT "{g}" TO "{name}";')
            with conn.transaction():
                conn.execute("\n".join(statements).encode())
    return time.perf_counter() - started


def measure(n: int) -> None:
    prefix = f"bi{uuid.uuid4().hex[:6]}_"
    try:
        made = create(prefix, n)
        dsn = pg.admin_dsn()
        target = PostgresTarget(PostgresTargetConfig(type="postgresql", name=f"bench-{prefix}", dsn=dsn))
        target.inspect()  # warm the connection and the catalog caches
        started = time.perf_counter()
        state = target.inspect()
        took = time.perf_counter() - started
        conn = target.connection()
        with conn.transaction():
            t0 = time.perf_counter()
            roles = conn.execute(pg_inspect.ROLES_QUERY).fetchall()
            t1 = time.perf_counter()
            members = conn.execute(pg_inspect.MEMBERSHIPS_QUERY).fetchall()
            t2 = time.perf_counter()
        profile = cProfile.Profile()
        t3 = time.perf_counter()
        profile.runcall(pg_inspect.build_roles, roles, members)
        build = time.perf_counter() - t3
        target.close()
        print(f"\nN = {n:,} login roles ({len(state.roles):,} roles in the cluster; created in {made:.0f}s)")
        print(f"  inspect() total       {took:6.2f} s   x1.00")
        print(f"  roles query           {t1 - t0:6.2f} s   x{(t1 - t0) / took:4.2f}   ({len(roles):,} rows)")
        print(f"  memberships query     {t2 - t1:6.2f} s   x{(t2 - t1) / took:4.2f}   ({len(members):,} rows)")
        print(f"  build_roles (Python)  {build:6.2f} s   x{build / took:4.2f}   (under cProfile)")
        pstats.Stats(profile).sort_stats("tottime").print_stats(6)
    finally:
        pg.drop_roles_with_prefix(prefix)


def main(argv: list[str]) -> None:
    for n in [int(a) for a in argv] or [100_000]:
        measure(n)


if __name__ == "__main__":
    main(sys.argv[1:])
