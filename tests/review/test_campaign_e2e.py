"""A full access-review campaign against a real slapd and PostgreSQL, driven
through the installed command: start, export, import (a tampered file is
rejected whole), apply revocations (dry run first), status, evidence, and the
audit trail chained and verified."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from psycopg import sql

from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "trader" }} ]

[[rule]]
id = "approvers"
description = "approvers approve"
grant = ["{p}trade_approver"]
when = {{ group = "approvers" }}

[[rule]]
id = "odd"
description = "a role name that is also markup"
grant = ["{p}<script>x</script>"]
when = {{ attr = "department", equals = "Operations" }}
"""

CATALOG = """
[role."{p}trade_approver"]
description = "Approve trades."
owner = "cco"
sensitivity = "critical"

[role."{p}trade_executor"]
description = "Enter orders <b>now</b>."
owner = "head-of-trading"
sensitivity = "high"
"""

SOD = """
[[policy]]
id = "trade-approve-execute"
description = "No user may both approve and execute trades."
conflicts = [ {{ role = "{p}trade_approver" }}, {{ role = "{p}trade_executor" }} ]
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("provisioner"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                          timeout=180, check=False)



def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_full_campaign(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    carol = ldap_ou.add_user("carol", **person("Trading", "Head of Desk"))
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader", manager=carol))
    ldap_ou.add_user("bob", **person("Operations", "Analyst", manager=carol))
    ldap_ou.add_group("approvers", [carol])
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES)
    maps = tmp_path / "mappings"
    for folder, text in (("roles", CATALOG), ("sod", SOD)):
        (maps / folder).mkdir()
        (maps / folder / "x.toml").write_text(text.format(p=p))
    setup.apply()
    with pg.admin_connect() as conn:  # out of band: alice approves too
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"), sql.Identifier(f"{p}alice")))
    cfg = str(setup.path)

    done = run("review", "start", "-c", cfg, "--campaign", "2026-Q4", "--reviewer", "manager")
    assert done.returncode == 0, done.stderr
    assert "carol: 4 item(s)" in done.stdout and "cco: 1 item(s)" in done.stdout
    again = run("review", "start", "-c", cfg, "--campaign", "2026-Q4")
    assert again.returncode != 0 and "already exists" in again.stderr

    out = tmp_path / "sheets"
    done = run("review", "export", "-c", cfg, "--campaign", "2026-Q4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    sheet = out / "2026-Q4-carol.csv"
    page = (out / "2026-Q4-carol.html").read_text()
    assert (out / "2026-Q4-cco.csv").exists() and (out / "2026-Q4-cco.html").exists()
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>" not in page
    assert "&lt;b&gt;now&lt;/b&gt;" in page and "http" not in page.split("<body>")[1]
    rows = read(sheet)
    order = [(r["identity"], r["access"]) for r in rows]
    assert order == sorted(order), "a person's items stay together, sorted by role (not by random item id)"
    by = {(r["identity"], r["access"].removeprefix(p)): r for r in rows}
    assert set(by) == {("alice", "trade_executor"), ("alice", "trade_reader"), ("alice", "trade_approver"),
                       ("bob", "<script>x</script>")}
    approver = by[("alice", "trade_approver")]
    assert approver["provenance"] == "out-of-band" and approver["sod"] == "trade-approve-execute"
    assert approver["sensitivity"] == "critical" and approver["granted_at"] == "not granted by provisioner (date unknown)"
    assert by[("alice", "trade_executor")]["provenance"] == "rule: desk-traders"
    assert by[("alice", "trade_executor")]["granted_at"][:2] == "20"  # from the audit trail

    approver.update(decision="revoke", comment="approves out of band; not needed")
    by[("alice", "trade_executor")].update(decision="revoke", comment="moving to research")
    by[("bob", "<script>x</script>")].update(decision="keep", comment="")

    # tampered: bob's markup role row re-pointed at another role -> the whole file is rejected
    bad = [dict(r) for r in rows]
    idx = next(i for i, r in enumerate(bad) if r["identity"] == "bob" and "script" in r["access"])
    bad[idx]["access"] = f"{p}trade_approver"
    write(tmp_path / "bad.csv", bad)
    done = run("review", "import", "-c", cfg, str(tmp_path / "bad.csv"))
    assert done.returncode != 0
    assert f"line {idx + 2}" in done.stderr and "tampered" in done.stderr and "nothing imported" in done.stderr
    status = run("review", "status", "-c", cfg, "--campaign", "2026-Q4")
    assert "0/5 decided" in status.stdout, status.stdout

    # a row of someone else's worksheet, an unknown id and a bad decision are each named
    foreign = read(out / "2026-Q4-cco.csv")[0]
    unknown = {**rows[1], "item_id": "i-0000000000000000"}
    odd = {**rows[2], "decision": "maybe"}
    write(tmp_path / "mixed.csv", [dict(rows[0]), foreign, unknown, odd])
    done = run("review", "import", "-c", cfg, str(tmp_path / "mixed.csv"))
    assert done.returncode != 0
    for needle in ("line 3: item", "assigned to 'cco', not to 'carol'", "line 4: unknown item id",
                   "line 5: item", "'maybe'"):
        assert needle in done.stderr, done.stderr

    write(sheet, rows)
    done = run("review", "import", "-c", cfg, str(sheet))
    assert done.returncode == 0, done.stderr
    assert "Imported 3 decision(s) of carol" in done.stdout

    dry = run("review", "apply", "-c", cfg, "--campaign", "2026-Q4", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 membership(s) would revoke; 0 flagged" in dry.stdout and "NOT REVOKED" not in dry.stdout
    assert f"{p}trade_approver" in memberships(p)[f"{p}alice"], "a dry run changes nothing"

    done = run("review", "apply", "-c", cfg, "--campaign", "2026-Q4")
    assert done.returncode == 0, done.stderr
    # the rule-based revoke is an exclusion the rules honour (tests/review/test_exclusion_e2e.py)
    assert "2 membership(s) revoked; 0 flagged" in done.stdout
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_reader"}
    assert not setup.plan().has_changes, "the revocation sticks: nothing to re-grant"

    status = run("review", "status", "-c", cfg, "--campaign", "2026-Q4")
    assert "3/5 decided" in status.stdout and "2 revoked, 0 flagged" in status.stdout
    assert "carol: 3/4 decided" in status.stdout and "cco: 0/1 decided" in status.stdout

    ev = tmp_path / "evidence"
    done = run("review", "evidence", "-c", cfg, "--campaign", "2026-Q4", "--out", str(ev))
    assert done.returncode == 0, done.stderr
    html = (ev / "evidence-2026-Q4.html").read_text()
    items = read(ev / "evidence-2026-Q4-items.csv")
    revoked = next(r for r in items if r["outcome"] == "revoked" and r["access"] == f"{p}trade_approver")
    assert revoked["audit_seq"].isdigit()
    assert any(r["decision"] == "open" for r in items)
    assert "Binding to the audit trail" in html and "&lt;script&gt;" in html and "<script>" not in html

    cfgobj = setup.config()
    store = StateStore(cfgobj.state.url, base_dir=cfgobj.base_dir)
    try:
        rows_ = list(store.iter_audit())
        seq = int(revoked["audit_seq"])
        record = next(r.content for r in rows_ if r.seq == seq)
        assert record["kind"] == "change_applied" and record["trigger"] == "review"
        assert "access review 2026-Q4, reviewer carol: approves out of band; not needed" in record["reason"]
        kinds = {r.content["kind"] for r in rows_}
        assert "review" in kinds
        report = verify_chain(store.audit, [], None)
        assert report.ok and report.count == len(rows_), report.problem
        assert f"seq {report.head_seq}" in html or report.head_seq > seq
    finally:
        store.close()

    # a decision forged in the review tables (the writer can UPDATE them) never reaches evidence
    assert run("audit", "verify", "-c", cfg).returncode == 0
    db = sqlite3.connect(Path(cfgobj.state.url.removeprefix("sqlite:///")))
    try:
        db.execute("UPDATE provisioner_review_items SET decision = 'keep', decided_by = 'cco', comment = 'fine' "
                   "WHERE campaign = '2026-Q4' AND coalesce(decision, '') = ''")
        db.commit()
    finally:
        db.close()
    res = run("audit", "verify", "-c", cfg)
    assert res.returncode == 1 and "BROKEN review decisions: review 2026-Q4 item" in res.stdout, res.stdout
    assert "is in no imported worksheet of the audit chain (row forged)" in res.stdout
    res = run("review", "evidence", "-c", cfg, "--campaign", "2026-Q4", "--out", str(tmp_path / "ev2"))
    assert res.returncode != 0 and "disagree with the audit chain; no evidence written" in res.stderr
    assert not (tmp_path / "ev2" / "evidence-2026-Q4.html").exists()


def test_formula_like_directory_values_are_defused_in_every_csv(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """E2E finding: a directory username that a spreadsheet runs as a formula (the classic
    ``-2+3+cmd|' /C calc'!A0``) reached the reviewer's worksheet as it was -- the defusing
    skipped a cell whose second character is a digit -- and ``sod report --format csv``
    defused nothing at all."""
    p = role_prefix
    evil = "-2+3+cmd|' /C calc'!A0"
    ldap_ou.add_user(evil, **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES)
    maps = tmp_path / "mappings"
    for folder, text in (("roles", CATALOG), ("sod", SOD)):
        (maps / folder).mkdir()
        (maps / folder / "x.toml").write_text(text.format(p=p))
    setup.apply()
    login = next(r for r in memberships(p) if r.endswith("cmd_c_calc_a0"))
    with pg.admin_connect() as conn:  # out of band: a conflict for the SoD report too
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}trade_approver")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"), sql.Identifier(login)))
    cfg = str(setup.path)

    assert run("review", "start", "-c", cfg, "--campaign", "2026-Q4", "--reviewer", "owner").returncode == 0
    out = tmp_path / "sheets"
    done = run("review", "export", "-c", cfg, "--campaign", "2026-Q4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cells = [r["identity"] for sheet in sorted(out.glob("*.csv")) for r in read(sheet)]
    assert cells and all(c == "'" + evil for c in cells), cells

    done = run("sod", "report", "-c", cfg, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [r["identity"] for r in rows] == ["'" + evil], rows


EXECUTOR_RULE = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor"]
when = {{ attr = "department", equals = "Trading" }}
"""


def test_hand_grant_of_a_dba_made_login_is_reviewed_as_out_of_band(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """E2E finding: a login the DBAs made before provisioner, named like a directory user
    (unmanaged: provisioner never changes it), held a hand grant the rules would give
    that user.  The worksheet called it "rule: desk-traders" with the user's attributes,
    although no rule ever granted it; the review's evidence misstated its provenance."""
    p = role_prefix
    ldap_ou.add_user("carol", **person("Risk", "Head"))
    ldap_ou.add_user("dee", **person("Trading", "Equity Trader"))
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}trade_executor")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dee")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_executor"), sql.Identifier(f"{p}dee")))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=EXECUTOR_RULE)
    (tmp_path / "mappings" / "roles").mkdir()
    (tmp_path / "mappings" / "roles" / "x.toml").write_text(
        f'[role."{p}trade_executor"]\ndescription = "Enter orders."\nowner = "carol"\nsensitivity = "high"\n'
    )
    setup.apply()
    cfg = str(setup.path)
    assert run("review", "start", "-c", cfg, "--campaign", "2026-Q4", "--reviewer", "owner").returncode == 0
    out = tmp_path / "sheets"
    assert run("review", "export", "-c", cfg, "--campaign", "2026-Q4", "--out", str(out)).returncode == 0
    (row,) = [r for r in read(out / "2026-Q4-carol.csv") if r["role"] == f"{p}dee"]
    assert (row["provenance"], row["rules"]) == ("out-of-band", ""), row

    row.update(decision="revoke", comment="hand grant, not needed")
    write(tmp_path / "d.csv", [row])
    assert run("review", "import", "-c", cfg, str(tmp_path / "d.csv"), "--reviewer", "carol").returncode == 0
    done = run("review", "apply", "-c", cfg, "--campaign", "2026-Q4")
    assert done.returncode == 0, done.stderr
    assert f"{p}dee" not in memberships(p), "the hand grant is revoked directly"
