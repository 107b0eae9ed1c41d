"""deploy/least-privilege-postgresql.sql, run with psql as the documentation says,
yields an account that carries the whole quickstart scenario with manage_privileges:
the sample directory, the sample rules and role catalog, the trading schema owned
by an object-owner role in a database owned by the bootstrap superuser (as in the
quickstart), and a business role that a DBA created by hand beforehand (brownfield).
First apply commits and verifies, the second plan is empty; on PostgreSQL 15 (the
shared server) and 16 (a private embedded one).

Role names are cluster-global, so every role of the scenario carries the test's
prefix: the copied mappings are rewritten accordingly."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support import config as test_config
from tests.support import pg

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "least-privilege-postgresql.sql"
EXE = Path(sys.executable).with_name("provisioner")
CATALOG_ROLES = re.findall(r"^\[role\.([a-z_]+)\]", (ROOT / "mappings/roles/trading.toml").read_text(), re.M)


def dsn_as(dsn: str, user: str | None = None, dbname: str | None = None) -> str:
    params = conninfo_to_dict(dsn)
    if user is not None:
        params["user"] = user
        params.pop("password", None)
    if dbname is not None:
        params["dbname"] = dbname
    return make_conninfo(**params)


def prefixed_mappings(dest: Path, p: str) -> None:
    shutil.copytree(ROOT / "mappings", dest)
    names = "|".join(sorted(CATALOG_ROLES, key=len, reverse=True))
    for path in dest.rglob("*.toml"):
        text = re.sub(rf"(?<![\w{{]])({names}|dept_)", lambda m: p + m.group(1), path.read_text())
        path.write_text(text)


@pytest.fixture(params=["15", "16"])
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(superuser DSN, role prefix) on PostgreSQL 15 (shared) or 16 (private, embedded)."""
    dsn = pg.admin_dsn() if request.param == "15" else pg.pg16_dsn()
    with pg.admin_connect(dsn) as conn:
        version = conn.info.server_version // 10000
    assert version == int(request.param), f"expected PostgreSQL {request.param}, got {version}"
    with pg.role_prefix_scope(dsn) as prefix:
        db = f"{prefix}qs"
        with pg.admin_connect(dsn) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))  # owned by the superuser
        try:
            yield dsn, prefix
        finally:
            with pg.admin_connect(dsn) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def psql(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("psql")
    assert exe, "psql is needed (Debian package postgresql-client)"
    return subprocess.run([exe, "-X", "-q", "-d", dsn, *args], capture_output=True, text=True, check=False)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, check=False, timeout=300)


def run_scenario_setup(admin: str, p: str) -> None:
    """The DBAs' world before the provisioner (an object owner with the trading schema in a
    database the superuser owns; a business role created by hand with a member the rules
    know nothing about), then the account made by the script as documented."""
    db, owner, account = f"{p}qs", f"{p}app_owner", f"{p}svc"
    with pg.admin_connect(dsn_as(admin, dbname=db)) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), sql.Identifier(owner)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute((ROOT / "examples" / "trading-schema.sql").read_text())
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}dept_trading")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dba_jane")))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}dept_trading"), sql.Identifier(f"{p}dba_jane"))
        )
    res = psql(
        dsn_as(admin, dbname=db),
        "-f", str(SCRIPT),
        "-v", f"account={account}",
        "-v", f"owners={owner}",
        "-v", f"databases={db}",
        "-v", f"roles={p}dept_trading",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


def write_config(tmp_path: Path, admin: str, p: str) -> Path:
    db, account = f"{p}qs", f"{p}svc"
    prefixed_mappings(tmp_path / "mappings", p)
    target = {
        "name": "pg",
        "type": "postgresql",
        "dsn": dsn_as(admin, user=account, dbname=db),
        "manage_privileges": True,
        "databases": [db],
    }
    config = test_config.write_config(
        tmp_path / "config.toml",
        sources=[{"name": "northwind", "type": "ldif", "path": str(ROOT / "examples" / "directory.ldif")}],
        targets=[target],
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        naming={"prefix": p},
        extra="[safety]\nmax_revocation_share = 1.0\n",
    )
    return config


def test_quickstart_scenario_as_the_least_privilege_account(tmp_path: Path, cluster: tuple[str, str]) -> None:
    admin, p = cluster
    db, owner, account = f"{p}qs", f"{p}app_owner", f"{p}svc"
    run_scenario_setup(admin, p)
    again = psql(dsn_as(admin, dbname=db), "-f", str(SCRIPT), "-v", f"account={account}", "-v", f"owners={owner}")
    assert again.returncode == 0, "the script is idempotent: " + again.stderr
    with pg.admin_connect(admin) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
            (account,),
        ).fetchone()
    assert row == (False, True, False, False, False)

    config = write_config(tmp_path, admin, p)
    assert cli("validate", "-c", str(config)).returncode == 0
    plan = tmp_path / "plan.json"
    res = cli("plan", "-c", str(config), "--out", str(plan), "--detailed-exitcode")
    assert res.returncode == 2, res.stderr
    res = cli("apply", "-c", str(config), "--plan", str(plan), "--reason", "least-privilege test")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "applied and verified" in res.stdout
    res = cli("plan", "-c", str(config), "--detailed-exitcode")
    assert res.returncode == 0, "a second plan is empty:\n" + res.stdout[-3000:]

    with pg.admin_connect(dsn_as(admin, dbname=db)) as conn:

        def has(role: str, check: str, *args: str) -> bool:
            row = conn.execute(f"SELECT {check}(%s, {', '.join(['%s'] * len(args))})", (role, *args)).fetchone()
            return bool(row and row[0])

        def members(group: str) -> set[str]:
            rows = conn.execute(
                "SELECT m.rolname FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid "
                "JOIN pg_roles m ON m.oid = am.member WHERE g.rolname = %s",
                (group,),
            ).fetchall()
            return {r[0] for r in rows}

        reader = f"{p}trade_reader"
        assert has(reader, "has_database_privilege", db, "CONNECT")
        assert has(reader, "has_table_privilege", "trading.orders", "SELECT")
        assert has(f"{p}trade_executor", "has_table_privilege", "trading.orders", "INSERT")
        assert has(f"{p}bkaczmarek", "has_table_privilege", "trading.orders", "INSERT")
        # the pre-existing role: handed out by the rules (ADMIN OPTION on 16), the DBA's hand grant kept
        assert {f"{p}bkaczmarek", f"{p}dba_jane"} <= members(f"{p}dept_trading")
        # the account holds no dangerous built-in role
        for builtin in ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"):
            assert account not in members(builtin)


def test_without_connect_grant_option_is_refused_at_plan_time(tmp_path: Path, cluster: tuple[str, str]) -> None:
    """What the issue saw with the old script: CONNECT granted by a non-owner without
    GRANT OPTION is a no-op with a warning at apply.  The plan now sees it: an error notice
    (``not_grantable``) naming the catalog file, the role and the database; the rest applies."""
    admin, p = cluster
    db = f"{p}qs"
    run_scenario_setup(admin, p)
    with pg.admin_connect(dsn_as(admin, dbname=db)) as conn:
        conn.execute(
            sql.SQL("REVOKE GRANT OPTION FOR CONNECT ON DATABASE {} FROM {} CASCADE").format(
                sql.Identifier(db), sql.Identifier(f"{p}svc")
            )
        )
    config = write_config(tmp_path, admin, p)
    res = cli("plan", "-c", str(config), "--detailed-exitcode")
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    refused = [line for line in res.stdout.splitlines() if "not_grantable" in line]
    assert refused and all(f"CONNECT on database {db} refused" in line for line in refused), res.stdout[-2000:]
    assert any(f"[role.{p}trade_reader]" in line and "trading.toml" in line for line in refused), refused
    res = cli("apply", "-c", str(config), "--reason", "least-privilege test")
    assert res.returncode == 0 and "error notice(s)" in res.stderr, res.stdout[-2000:] + res.stderr[-2000:]
    assert "grant CONNECT" not in res.stdout
