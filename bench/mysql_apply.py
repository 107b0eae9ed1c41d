"""Benchmark: MysqlTarget.apply on MariaDB for N accounts (default 2,000).

Each account: marker row + CREATE USER, plus two role GRANTs (two roles).
MariaDB commits every account statement on its own, so the apply is one
statement per round trip; the figures are the apply time, the statements sent,
statements per second, and the cost of one inspect afterwards (queries and
time) as a share of the apply.  Everything created carries a unique prefix and
is dropped at the end.

    .venv/bin/python bench/mysql_apply.py [-n 2000] [--host 127.0.0.1] [--port 3306]
"""

from __future__ import annotations

import argparse
import os
import stat
import tempfile
import time
import uuid
from pathlib import Path

import pymysql

from provisioner.config import MysqlTargetConfig
from provisioner.core.values.model import Reason
from provisioner.core.values.plan import Change, ChangeKind, make_change
from provisioner.targets.mysql import MysqlTarget

WHY = (Reason("bench", "bench"),)


def build_changes(prefix: str, n: int) -> list[Change]:
    groups = [f"{prefix}g1", f"{prefix}g2"]
    out = [
        make_change(
            ChangeKind.CREATE_ROLE,
            g,
            WHY,
            role_kind="group",
            login=False,
            valid_until=None,
            marker={"kind": "group", "id": None, "source": None},
        )
        for g in groups
    ]
    for i in range(n):
        name = f"{prefix}u{i:05d}"
        out.append(
            make_change(
                ChangeKind.CREATE_ROLE,
                name,
                WHY,
                role_kind="user",
                login=True,
                valid_until=None,
                marker={"kind": "user", "id": f"id-{i}", "source": "bench"},
            )
        )
    for i in range(n):
        for g in groups:
            out.append(make_change(ChangeKind.GRANT_MEMBERSHIP, f"{prefix}u{i:05d}", WHY, group=g))
    return out


def admin(host: str, port: int) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)


def cleanup(host: str, port: int, prefix: str, meta: str) -> None:
    with admin(host, port) as conn, conn.cursor() as cur:
        cur.execute("SELECT User, Host FROM mysql.global_priv WHERE LEFT(User, %s) = %s", (len(prefix), prefix))
        for user, h in cur.fetchall():
            if h == "":
                cur.execute(f"DROP ROLE IF EXISTS `{user}`")
            else:
                cur.execute(f"DROP USER IF EXISTS {conn.escape(user)}@{conn.escape(h)}")
        cur.execute(f"DROP DATABASE IF EXISTS `{meta}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--host", default=os.environ.get("PROVISIONER_TEST_MYSQL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PROVISIONER_TEST_MYSQL_PORT", "3306")))
    args = parser.parse_args()
    prefix = f"bm{uuid.uuid4().hex[:6]}_"
    meta = f"{prefix}meta"
    password = uuid.uuid4().hex
    secret = Path(tempfile.mkdtemp()) / "pw"
    secret.write_text(password)
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    svc = f"{prefix}svc"
    try:
        with admin(args.host, args.port) as conn, conn.cursor() as cur:  # docs/mysql.md least privilege
            account = f"{conn.escape(svc)}@'%%'"
            cur.execute(f"CREATE USER {account} IDENTIFIED BY %s", (password,))
            account = account.replace("%%", "%")
            cur.execute(f"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {account}")
            cur.execute(f"GRANT SELECT ON mysql.global_priv TO {account}")
            cur.execute(f"GRANT SELECT ON mysql.roles_mapping TO {account}")
            cur.execute(f"GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `{meta}`.* TO {account}")
        cfg = MysqlTargetConfig(
            type="mysql",
            name=f"{prefix}bench",
            host=args.host,
            port=args.port,
            user=svc,
            password=f"file:{secret}",
            meta_database=meta,
        )
        target = MysqlTarget(cfg)
        changes = build_changes(prefix, args.n)
        target.inspect()
        start = time.perf_counter()
        result = target.apply(changes)
        applied = time.perf_counter() - start
        before = target.statements_executed
        start = time.perf_counter()
        state = target.inspect()
        inspected = time.perf_counter() - start
        queries = target.statements_executed - before
        target.close()
        mine = sum(1 for n in state.roles if n.startswith(prefix) and state.roles[n].managed)
        print(f"accounts: {args.n:,} users + 2 roles, {len(changes):,} changes, {mine:,} managed after apply")
        print(
            f"apply:    {applied:8.2f} s  {result.statements:,} statements  "
            f"{result.statements / applied:,.0f} statements/s  {applied / len(changes) * 1000:.2f} ms/change"
        )
        print(f"inspect:  {inspected:8.2f} s  {queries} queries  ({inspected / applied:.1%} of the apply time)")
    finally:
        cleanup(args.host, args.port, prefix, meta)
        secret.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
