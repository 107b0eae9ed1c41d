"""The installed ``provisioner`` command, run as a subprocess: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from psycopg import sql

from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

EXE = str(Path(sys.executable).with_name("provisioner"))
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False)



def test_plan_json_out_detailed_exitcode_and_apply(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    cfg = str(setup.path)

    res = run("plan", "-c", cfg, "--detailed-exitcode")
    assert res.returncode == 2, res.stderr
    assert f"+ grant {p}trade_executor to {p}ann" in res.stdout
    assert "because desk-traders: department='Trading', title='Equity Trader'" in res.stdout

    out = tmp_path / "plan.json"
    res = run("plan", "-c", cfg, "--format", "json", "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["format_version"] == 1 and doc["plan_digest"].startswith("sha256:")
    assert {"created_at", "config_digest", "targets", "summary", "identities_seen"} <= set(doc)
    change = next(c for c in doc["targets"][0]["changes"] if c["kind"] == "grant_membership")
    assert {"kind", "role", "params", "reasons", "before", "after", "summary"} <= set(change)
    assert json.loads(out.read_text())["targets"] == doc["targets"]

    res = run("apply", "-c", cfg, "--plan", str(out), "--reason", "CHG-42")
    assert res.returncode == 0, res.stderr
    assert "Apply complete" in res.stdout
    assert memberships(p)[f"{p}ann"] == {f"{p}trade_executor", f"{p}trade_reader"}

    res = run("plan", "-c", cfg, "--detailed-exitcode")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No changes" in res.stdout


def test_stale_saved_plan_refused_with_clear_message(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    ldap_ou.add_user("ben", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    out = tmp_path / "plan.json"
    assert run("plan", "-c", str(setup.path), "--out", str(out)).returncode == 0
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{p}ben")))
    res = run("apply", "-c", str(setup.path), "--plan", str(out), "--reason", "CHG-42")
    assert res.returncode == 1
    assert "Saved plan is stale" in res.stderr
    assert f"{p}ben" not in memberships(p)

    edited = json.loads(out.read_text())
    edited["targets"][0]["changes"] = []
    out.write_text(json.dumps(edited))
    res = run("apply", "-c", str(setup.path), "--plan", str(out), "--reason", "CHG-42")
    assert res.returncode == 1 and "edited" in res.stderr


def test_explain_names_rules_and_attributes(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    ldap_ou.add_user("cat", **person("Operations", "Analyst"))
    setup = make_setup(tmp_path, ldap_ou.config(), role_prefix)
    res = run("explain", "-c", str(setup.path), "cat")
    assert res.returncode == 0, res.stderr
    assert "MATCH operations" in res.stdout and "department='Operations'" in res.stdout
    assert f"grant {role_prefix}ops_settlement to {role_prefix}cat" in res.stdout
    res = run("explain", "-c", str(setup.path), "nobody")
    assert res.returncode == 1 and "no identity" in res.stderr


def test_validate_reports_config_and_rule_problems(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[[sources]]\nname = "x"\ntype = "ldap"\nurl = "ldap://h"\nbind_password = "hunter2"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 1
    assert f"{cfg}: sources[0].bind_password" in res.stderr and "never a literal" in res.stderr
    assert f"{cfg}: sources[0].user_base: Field required" in res.stderr
    assert "hunter2" not in res.stderr

    (tmp_path / "m" / "rules").mkdir(parents=True)
    (tmp_path / "m" / "rules" / "r.toml").write_text(
        '\n[[rule]]\nid = "r"\ndescription = "d"\ngrant = ["g"]\nwhen = { attr = "x" }\n'
    )
    good = tmp_path / "good.toml"
    good.write_text(
        '[provisioner]\nmappings = "m"\n[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    res = run("validate", "-c", str(good))
    assert res.returncode == 1
    assert f"{tmp_path / 'm' / 'rules' / 'r.toml'}:2: rule 'r'" in res.stderr


def test_rules_test_command_passes_on_shipped_mappings_and_fails_on_wrong_case(tmp_path: Path) -> None:
    res = run("rules", "test", "--mappings", str(ROOT / "mappings"))
    assert res.returncode == 0, res.stdout
    assert " passed, 0 failed" in res.stdout
    m = tmp_path / "m"
    (m / "rules").mkdir(parents=True)
    (m / "tests").mkdir()
    (m / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "r"\ndescription = "d"\ngrant = ["g"]\nwhen = { attr = "x", equals = "y" }\n'
    )
    (m / "tests" / "t.toml").write_text('[[case]]\nname = "wrong"\nattributes = { x = "y" }\nexpect = ["h"]\n')
    res = run("rules", "test", "--mappings", str(m))
    assert res.returncode == 1
    assert "case 'wrong': missing ['h'], unexpected ['g']" in res.stdout


def test_explain_shows_only_this_identitys_notices_in_plain_words(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """E2E finding: ``explain eve`` listed another person's error notice under "Planned
    changes for this identity" (its message says "everything revoked": "eve" matched
    inside a word), and a hand membership read "by hand (...), which): its privileges"."""
    p = role_prefix
    ldap_ou.add_user("eve", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("mae", **person("Operations", hrHireDate="2026-13-45"))  # an error notice about mae
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    setup.apply()
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}dba_desk")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}dba_desk"), sql.Identifier(f"{p}eve")))
    res = run("explain", "-c", str(setup.path), "eve")
    assert res.returncode == 0, res.stderr
    planned = res.stdout[res.stdout.index("Planned changes for this identity:"):]
    assert "'mae'" not in planned, planned
    assert "which)" not in res.stdout, res.stdout
    assert f"eve is a member of {p}dba_desk ({p}eve is a member of {p}dba_desk by hand" in res.stdout, res.stdout


def test_explain_agrees_with_the_plan_on_a_shared_stable_id(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """E2E finding: two entries share the stable id (``employeeNumber`` as the stable id, HR
    typed an id twice); the plan treats the identity as having left (docs/lifecycle.md), but
    ``explain`` said "lifecycle: active" and listed the roles the rules would give."""
    p = role_prefix
    ldap_ou.add_user("bob", **person("Trading", "Equity Trader", employeeNumber="E2"))
    ldap_ou.add_user("kim", **person("Trading", "Equity Trader", employeeNumber="E2"))
    setup = make_setup(tmp_path, ldap_ou.config(stable_id_attribute="employeeNumber"), p)
    res = run("explain", "-c", str(setup.path), "bob")
    assert res.returncode == 0, res.stderr
    assert "lifecycle: leaver" in res.stdout and "share stable id 'E2'" in res.stdout, res.stdout
    assert "Roles from rules: none" in res.stdout, res.stdout
