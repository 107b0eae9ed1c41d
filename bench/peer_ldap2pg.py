"""Same-run comparison with the best-known peer, ldap2pg 5.9 (not a dependency).

Install it into a separate virtualenv (it needs python-ldap, which compiles
against Debian's libldap2-dev and libsasl2-dev):

    apt-get install -y libldap2-dev libsasl2-dev
    python3 -m venv /tmp/l2p && /tmp/l2p/bin/pip install ldap2pg==5.9 psycopg2-binary
    LDAP2PG=/tmp/l2p/bin/ldap2pg .venv/bin/python -m bench.peer_ldap2pg 10000

Both tools reconcile the same synthetic directory (bench/ldap_fixture.py) into
the same PostgreSQL with equivalent mappings (one login role per active person,
membership in business roles by department and title), each in its own role
prefix: first sync, no-op sync, and a sync after 1% moved and 1% left.  Figures
are wall-clock seconds of whole runs, printed with their ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ldap_fixture import PEOPLE, load_directory
from bench.sync import _churn, _setup, _sync
from tests.support import pg

L2P_RULES = [
    ("(&(departmentNumber=Trading)(title=*Trader*))", ["trade_executor", "trade_reader"]),
    ("(|(title=Head of Trading)(title=Trade Approver))", ["trade_approver"]),
    ("(departmentNumber=Operations)", ["ops_settlement", "trade_reader"]),
    ("(departmentNumber=Compliance)", ["compliance_reader"]),
]


def _l2p_config(tmp: Path, server: Any, prefix: str) -> Path:
    from psycopg import sql

    login = f"{prefix}svc"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(login)))
    # The peer drops leavers with REASSIGN OWNED, which a CREATEROLE login may not do on
    # PostgreSQL 15: it runs as the admin login (ours runs as the least-privilege one).
    dsn = pg.admin_dsn()
    groups = sorted({g for _, gs in L2P_RULES for g in gs})
    sync_map: list[dict[str, Any]] = [{"role": {"names": [prefix + g for g in groups], "options": "NOLOGIN"}}]
    active = "(objectClass=inetOrgPerson)(hrStatus=active)"
    sync_map.append(
        {
            "ldapsearch": {"base": PEOPLE, "filter": f"(&{active})"},
            "role": {"name": prefix + "{uid}", "options": "LOGIN"},
        }
    )
    for flt, parents in L2P_RULES:
        sync_map.append(
            {
                "ldapsearch": {"base": PEOPLE, "filter": f"(&{active}{flt})"},
                "role": {"name": prefix + "{uid}", "options": "LOGIN", "parents": [prefix + p for p in parents]},
            }
        )
    managed = (
        f"SELECT 'public' UNION SELECT rolname FROM pg_catalog.pg_roles "
        f"WHERE rolname LIKE '{prefix}%' AND rolname <> '{login}'"
    )
    cfg = {
        "version": 5,
        "ldap": {
            "uri": server.url,
            "binddn": server.reader_dn,
            "password": Path(server.reader_password_file).read_text().strip(),
        },
        "postgres": {"dsn": dsn, "managed_roles_query": managed, "roles_blacklist_query": ["pg_*", "postgres", login]},
        "sync_map": sync_map,
    }
    path = tmp / "ldap2pg.yml"
    path.write_text(json.dumps(cfg))  # YAML is a superset of JSON
    path.chmod(0o600)
    return path


def _l2p_run(exe: str, cfg: Path) -> float:
    started = time.perf_counter()
    res = subprocess.run(
        [exe, "--config", str(cfg), "--real", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "LDAPNOINIT": "1"},
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"ldap2pg failed ({res.returncode}): {res.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    exe = os.environ.get("LDAP2PG")
    if not exe:
        sys.exit("set LDAP2PG to an ldap2pg 5.9 executable (see the module docstring)")
    n = int(argv[0]) if argv else 10_000
    server, _ = load_directory(n, max(1, min(3000, n // 5)))
    ours_prefix, peer_prefix = pg.new_prefix(), pg.new_prefix()
    rows: dict[str, tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "ours").mkdir()
            ours_cfg = _setup(Path(tmp) / "ours", server, ours_prefix)
            peer_cfg = _l2p_config(Path(tmp), server, peer_prefix)
            for phase in ("first", "noop"):
                rows[phase] = (_sync(ours_cfg)["seconds"], _l2p_run(exe, peer_cfg))
            _churn(server, n)
            rows["churn"] = (_sync(ours_cfg)["seconds"], _l2p_run(exe, peer_cfg))
    finally:
        server.cleanup()
        pg.drop_roles_with_prefix(ours_prefix)
        pg.drop_roles_with_prefix(peer_prefix)
    print(f"{n} users, same slapd and PostgreSQL, one run")
    print(f"{'phase':>6} {'provisioner s':>14} {'ldap2pg 5.9 s':>14} {'peer/ours':>10}")
    for phase, (ours, peer) in rows.items():
        print(f"{phase:>6} {ours:>14.2f} {peer:>14.2f} {peer / ours:>10.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
