"""The provisioner refuses to log in as a superuser unless the target says
``allow_superuser = true``, and warns loudly when a CREATEROLE login runs on
PostgreSQL 15 or older (where CREATEROLE can reach pg_execute_server_program)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from provisioner.targets.postgres import PostgresTarget
from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

EXE = Path(sys.executable).with_name("provisioner")


def with_dsn(path: Path, dsn: str, extra: str = "") -> None:
    text = path.read_text()
    start = text.index("dsn = ")
    end = text.index("\n", start)
    path.write_text(text[:start] + f"dsn = {json.dumps(dsn)}{extra}" + text[end:])


def test_superuser_login_is_refused_before_anything_is_planned(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, pg_dsn: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p)
    with_dsn(setup.path, pg_dsn)  # the tests' admin DSN: a superuser
    res = subprocess.run([str(EXE), "apply", "-c", str(setup.path), "--reason", "CHG-42"], capture_output=True, text=True, check=False)
    assert res.returncode == 1, res.stderr
    assert "a superuser; refused" in res.stderr and "allow_superuser = true" in res.stderr
    assert "targets" in res.stderr or "target pg" in res.stderr
    assert memberships(p) == {}, "nothing applied"

    with_dsn(setup.path, pg_dsn, "\nallow_superuser = true")
    res = subprocess.run([str(EXE), "apply", "-c", str(setup.path), "--reason", "CHG-42"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader"}
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert not any(e["level"] == "warning" for e in events), "an explicit allow_superuser is not a warning"


def createrole_login(dsn: str, name: str) -> str:
    with pg.admin_connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(name)))
    params = conninfo_to_dict(dsn)
    params["user"] = name
    params.pop("password", None)
    return make_conninfo(**params)


def warnings_on_connect(dsn: str) -> list[dict[str, object]]:
    target = PostgresTarget(pg.target_config(dsn=dsn, allow_superuser=False))
    try:
        with structlog.testing.capture_logs() as logs:
            target.connection()
            target.close()
            target.connection()  # once per target, not per connection
    finally:
        target.close()
    return [e for e in logs if e["log_level"] == "warning"]


def test_createrole_on_postgresql_15_warns_with_the_mitigation(role_prefix: str, pg_dsn: str) -> None:
    with pg.admin_connect(pg_dsn) as conn:
        version = conn.info.server_version
    assert version < 160000, "the shared test server is PostgreSQL 15 (the 16 case is the next test)"
    logs = warnings_on_connect(createrole_login(pg_dsn, f"{role_prefix}svc"))
    assert [e["event"] for e in logs] == ["createrole_escalation_risk"]
    assert "pg_execute_server_program" in str(logs[0]["risk"]) and "docs/deployment.md" in str(logs[0]["mitigation"])


def test_createrole_on_postgresql_16_does_not_warn(pg16_dsn: str) -> None:
    with pg.role_prefix_scope(pg16_dsn) as prefix:
        assert warnings_on_connect(createrole_login(pg16_dsn, f"{prefix}svc")) == []
