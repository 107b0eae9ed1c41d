"""A reviewer revokes RULE-based access (brownfield: the business roles were made by
DBAs, drift = report): the revoke becomes a time-boxed exclusion the rules honour.
The next ordinary apply removes the membership, ``explain`` says why, it stays
removed run after run, and it comes back when the exclusion expires or the
person's attributes change (the reviewer certified the access as it was)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql

from provisioner.core.values.plan import ChangeKind
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "[Tt]rader" }} ]
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("provisioner"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                          timeout=180, check=False)


def revoke_in_sheet(sheet: Path, identity: str, access: str, comment: str) -> None:
    with sheet.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    hit = [r for r in rows if r["identity"] == identity and r["access"] == access]
    assert len(hit) == 1, rows
    hit[0].update(decision="revoke", comment=comment)
    with sheet.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_revoke_of_rule_based_access_is_honoured_by_the_rules(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    with pg.admin_connect() as conn:  # brownfield: the DBAs made the business roles
        for r in ("trade_executor", "trade_reader"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + r)))
    carol = ldap_ou.add_user("carol", **person("Trading", "Head of Desk"))
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader", manager=carol))
    ldap_ou.add_user("dave", **person("Trading", "Bond Trader", manager=carol))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES)  # drift = report
    setup.apply()
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader"}
    cfg = str(setup.path)

    assert run("review", "start", "-c", cfg, "--campaign", "2026-Q4").returncode == 0
    out = tmp_path / "sheets"
    assert run("review", "export", "-c", cfg, "--campaign", "2026-Q4", "--out", str(out)).returncode == 0
    sheet = out / "2026-Q4-carol.csv"
    revoke_in_sheet(sheet, "alice", f"{p}trade_executor", "alice moved to research; no order entry")
    done = run("review", "import", "-c", cfg, str(sheet))
    assert done.returncode == 0, done.stderr

    # the plan of an ordinary run revokes it, naming the review decision (not drift, not flagged)
    plan = setup.plan()
    revokes = [c for tp in plan.targets for c in tp.changes if c.kind is ChangeKind.REVOKE_MEMBERSHIP]
    assert [(c.role, c.param("group")) for c in revokes] == [(f"{p}alice", f"{p}trade_executor")]
    why = revokes[0].reasons[0]
    assert why.rule == "review-exclusion:2026-Q4"
    assert "carol" in why.text and "moved to research" in why.text and "until" in why.text

    setup.apply()
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_reader"}
    assert memberships(p)[f"{p}dave"] == {f"{p}trade_executor", f"{p}trade_reader"}, "only alice"
    assert not setup.plan().has_changes, "the rules honour the exclusion: nothing re-granted"

    exp = run("explain", "-c", cfg, "alice")
    assert exp.returncode == 0, exp.stderr
    assert f"EXCLUDED {p}trade_executor" in exp.stdout
    assert "revoked in access review 2026-Q4" in exp.stdout and "carol" in exp.stdout

    # the audit trail holds the decision with its exclusion, and the revoke it caused
    conf = setup.config()
    store = StateStore(conf.state.url, base_dir=conf.base_dir)
    try:
        rows = [r.content for r in store.iter_audit()]
    finally:
        store.close()
    decided = [r for r in rows if r["kind"] == "review" and (r.get("after") or {}).get("decision") == "revoke"]
    assert decided and decided[0]["after"]["exclusion"]["access"] == f"{p}trade_executor"
    applied = [r for r in rows if r["kind"] == "change_applied" and r.get("role") == f"{p}alice"
               and "review-exclusion:2026-Q4" in r["reason"]]
    assert applied, "the revoke is in the audit trail with the review as its reason"

    # expiry: once the exclusion runs out, the rules grant it again
    later = datetime.now(UTC) + timedelta(days=181)
    regrant = [c for tp in setup.plan(now=later).targets for c in tp.changes if c.role == f"{p}alice"]
    assert [(c.kind, c.param("group")) for c in regrant] == [
        (ChangeKind.GRANT_MEMBERSHIP, f"{p}trade_executor")]

    # a change of attributes the grant rested on lapses the exclusion (she is re-certified next time)
    ldap_ou.modify(alice, title="Senior Trader")
    regrant = [c for tp in setup.plan().targets for c in tp.changes if c.role == f"{p}alice"]
    assert [(c.kind, c.param("group")) for c in regrant] == [
        (ChangeKind.GRANT_MEMBERSHIP, f"{p}trade_executor")]


def test_a_revoke_the_next_ordinary_apply_made_is_evidenced_as_revoked(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """E2E finding (session 14): docs/reviews.md says a revoke of rule-based access is removed
    by the next ordinary apply. When that apply did it, ``review apply`` then found the membership
    gone and recorded the item as "already gone" (no audit seq): ``review status`` said 0 revoked and
    the campaign evidence listed no revocation, although the audit trail holds the revoke the
    decision caused. The item is "revoked" with the sequence number of that ``change_applied``."""
    p = role_prefix
    carol = ldap_ou.add_user("carol", **person("Trading", "Head of Desk"))
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader", manager=carol))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES)
    setup.apply()
    cfg = str(setup.path)
    assert run("review", "start", "-c", cfg, "--campaign", "2026-Q4").returncode == 0
    out = tmp_path / "sheets"
    assert run("review", "export", "-c", cfg, "--campaign", "2026-Q4", "--out", str(out)).returncode == 0
    revoke_in_sheet(out / "2026-Q4-carol.csv", "alice", f"{p}trade_executor", "moved to research")
    assert run("review", "import", "-c", cfg, str(out / "2026-Q4-carol.csv")).returncode == 0
    setup.apply()  # the ordinary run carries the decision out
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_reader"}

    done = run("review", "apply", "-c", cfg, "--campaign", "2026-Q4")
    assert done.returncode == 0, done.stderr
    assert "already gone" not in done.stdout, done.stdout
    status = run("review", "status", "-c", cfg, "--campaign", "2026-Q4")
    assert "1 revoked" in status.stdout, status.stdout

    conf = setup.config()
    store = StateStore(conf.state.url, base_dir=conf.base_dir)
    try:
        (seq,) = [r.seq for r in store.iter_audit() if r.content["kind"] == "change_applied"
                  and r.content.get("role") == f"{p}alice" and "review-exclusion:2026-Q4" in r.content["reason"]]
    finally:
        store.close()
    ev = tmp_path / "evidence"
    assert run("review", "evidence", "-c", cfg, "--campaign", "2026-Q4", "--out", str(ev)).returncode == 0
    with (ev / "evidence-2026-Q4-items.csv").open(encoding="utf-8", newline="") as fh:
        (row,) = [r for r in csv.DictReader(fh) if r["access"] == f"{p}trade_executor"]
    assert (row["outcome"], row["audit_seq"]) == ("revoked", str(seq)), row
