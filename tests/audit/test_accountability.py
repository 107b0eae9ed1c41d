"""Accountability (issue 17): ``apply`` needs a reason matching the configured ticket pattern and
records, before anything changes, the approver and the saved plan applied (its digest and the
run that planned it).  The installed command against real slapd and PostgreSQL, with the
business roles pre-existing (brownfield)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

from psycopg import sql

from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

EXE = str(Path(sys.executable).with_name("provisioner"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_apply_needs_a_ticket_and_records_approver_and_saved_plan(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    cfg = str(setup.path)
    with pg.admin_connect() as conn:  # brownfield: the DBAs made the business roles and a hand grant
        for role in ("trade_executor", "trade_reader"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}{role}")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dba_bob")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_reader"), sql.Identifier(f"{p}dba_bob")))

    res = run("apply", "-c", cfg)
    assert res.returncode == 2 and "--reason: a reason is required" in res.stderr
    setup.path.write_text(setup.path.read_text() + '\n[audit]\nreason_pattern = "^(CHG|INC)-[0-9]+"\n')
    res = run("apply", "-c", cfg, "--reason", "because I can")
    assert res.returncode == 2
    assert "'because I can' does not match [audit] reason_pattern '^(CHG|INC)-[0-9]+'" in res.stderr
    assert cfg in res.stderr
    assert f"{p}ann" not in memberships(p)

    out = tmp_path / "plan.json"
    res = run("plan", "-c", cfg, "--out", str(out), "--actor", "planner")
    assert res.returncode == 0, res.stderr
    saved = json.loads(out.read_text())
    res = run("apply", "-c", cfg, "--plan", str(out), "--reason", "CHG-42", "--approved-by", getpass.getuser())
    assert res.returncode == 2 and "an approver is someone else" in res.stderr
    res = run("apply", "-c", cfg, "--plan", str(out), "--reason", "CHG-42", "--approved-by", "mgr.smith")
    assert res.returncode == 0, res.stderr
    assert memberships(p)[f"{p}ann"] == {f"{p}trade_executor", f"{p}trade_reader"}
    assert memberships(p)[f"{p}dba_bob"] == {f"{p}trade_reader"}  # the hand grant is left alone

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        rows = [r.content for r in store.iter_audit()]
    finally:
        store.close()
    planning = next(r for r in rows if r["kind"] == "run_planned")
    auth = [r for r in rows if r["kind"] == "apply_authorised"]
    assert len(auth) == 1
    a = auth[0]
    assert a["reason"] == "CHG-42" and a["after"]["ticket"] == "CHG-42" and a["after"]["approver"] == "mgr.smith"
    assert a["after"]["saved_plan"]["digest"] == saved["plan_digest"]
    assert a["after"]["saved_plan"]["planning_run"] == planning["run_id"] == saved["meta"]["planning_run"]
    assert a["after"]["saved_plan"]["planned_by"].endswith("(planner)")
    applied = [r for r in rows if r["kind"] == "change_applied"]
    assert applied and all(r["run_id"] == a["run_id"] for r in applied)
    assert rows.index(a) < rows.index(applied[0])  # authorised before anything changed
