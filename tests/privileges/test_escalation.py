"""A managed role made SUPERUSER by hand (issue 16, finding 7): an error notice,
an alert when the run closes, exit 3; a leaver in that state is disabled as far
as a CREATEROLE account can (memberships revoked) and the rest is reported.
Real PostgreSQL; brownfield: a DBA-made role holds a membership too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.core.governance.alerts import AlertPolicy, History, Severity, evaluate
from provisioner.engine.recovery import planned_event
from provisioner.mappings import load_mappings
from tests.privileges.support import LDIF, Env, environment, run
from tests.support import pg


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("provisioner"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                          timeout=180, check=False)


def members(env: Env, role: str) -> set[str]:
    with env.admin() as conn:
        rows = conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (role,)
        ).fetchall()
    return {r[0] for r in rows}


def attributes(role: str) -> tuple[bool, bool]:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        e.write()
        e.apply()
        with e.admin() as conn:
            run(conn, "ALTER ROLE {} SUPERUSER", f"{role_prefix}bkaczmarek")
            run(conn, "CREATE ROLE {} NOLOGIN", f"{role_prefix}dba_desk")  # a DBA's own group role
            run(conn, "GRANT {} TO {}", f"{role_prefix}dba_desk", f"{role_prefix}bkaczmarek")
        yield e


def test_superuser_on_a_managed_role_is_an_error_an_alert_and_exit_3(env: Env) -> None:
    p = env.prefix
    plan = env.plan()
    (notice,) = [n for t in plan.targets for n in t.notices if n.code == "privileged_attribute"]
    assert notice.role == f"{p}bkaczmarek" and notice.level.value == "error"
    assert "has SUPERUSER" in notice.message and f"ALTER ROLE {p}bkaczmarek NOSUPERUSER" in notice.message
    record = planned_event(env.ctx(), plan).content()
    alerts = evaluate([record], load_mappings(env.config().mappings_dir).catalog, History(), AlertPolicy())
    (alert,) = [a for a in alerts if a.key.startswith("privileged_attribute:")]
    assert alert.severity is Severity.CRITICAL and alert.facts["role"] == f"{p}bkaczmarek"
    done = cli("plan", "-c", str(env.path))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "privileged_attribute" in done.stderr


def test_a_superuser_leaver_loses_what_provisioner_can_take(env: Env, tmp_path: Path) -> None:
    p = env.prefix
    ldif = tmp_path / "directory.ldif"
    text = LDIF.read_text()
    start = text.index("uid: bkaczmarek")
    ldif.write_text(text[:start] + text[start:].replace("hrStatus: active", "hrStatus: terminated", 1))
    env.path.write_text(env.path.read_text().replace(str(LDIF), str(ldif)))
    assert f"{p}trade_executor" in members(env, f"{p}bkaczmarek")

    plan = env.plan()
    revokes = sorted(c.describe() for c in plan.changes if c.role == f"{p}bkaczmarek")
    assert revokes == [f"revoke {p}trade_executor from {p}bkaczmarek"], revokes
    (incomplete,) = [n.message for t in plan.targets for n in t.notices if n.code == "leaver_incomplete"]
    assert "cannot set NOLOGIN" in incomplete and f"left for a DBA: memberships of {p}dba_desk" in incomplete

    done = cli("apply", "-c", str(env.path), "--reason", "CHG-1234 leaver bkaczmarek")
    assert done.returncode == 3, done.stdout + done.stderr  # applied, and still an error
    assert "Apply complete" in done.stdout
    assert members(env, f"{p}bkaczmarek") == {f"{p}dba_desk"}  # the DBA's own group is theirs to take
    assert attributes(f"{p}bkaczmarek") == (True, True)  # only a superuser can change these
