"""The quarterly evidence pack against a real slapd and PostgreSQL (brownfield: business
roles by DBAs, a hand grant reported as drift): a review revoke with its audit
reference, two leavers (an HR leave date: exact latency; a status change: an upper
bound from the previous run), SoD exceptions with expiry, drift and its resolution,
the verified chain; the manifest verifies with the public key alone and any edit,
addition or other key is caught."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql

from provisioner.core.governance.review import campaign_for
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import RELAXED_SAFETY, make_setup, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor"]
when = {{ attr = "title", regex = "[Tt]rader" }}
"""

CATALOG = """
[role."{p}trade_approver"]
description = "Approve trades (granted by hand, never by a rule)."
owner = "cco"
sensitivity = "high"
"""

SOD = """
[[policy]]
id = "trade-approve-execute"
description = "No user may both approve and execute trades."
conflicts = [ {{ role = "{p}trade_approver" }}, {{ role = "{p}trade_executor" }} ]
"""

EXCEPTIONS = """
[[exception]]
identity = "bob"
policy = "trade-approve-execute"
approver = "cco"
reason = "covering the desk"
expires = "2027-03-31"
ticket = "GRC-42"
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("provisioner"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                          timeout=180, check=False)


def test_evidence_pack(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    with pg.admin_connect() as conn:
        for r in ("trade_executor", "trade_approver"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + r)))
    carol = ldap_ou.add_user("carol", **person("Trading", "Head of Desk"))
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader", manager=carol))
    bob = ldap_ou.add_user("bob", **person("Trading", "Bond Trader", manager=carol))
    erin = ldap_ou.add_user("erin", **person("Trading", "FX Trader", manager=carol))
    key = tmp_path / "audit-key.pem"
    gen = run("audit", "keygen", "--out", str(key))
    assert gen.returncode == 0, gen.stderr
    public = tmp_path / "trusted" / "audit-public.pem"  # held by the auditor, apart from the pack
    public.parent.mkdir()
    public.write_text(gen.stdout)
    extra = RELAXED_SAFETY + f'\n[audit]\nsigning_key = "file:{key}"\n'
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES, extra=extra)
    maps = tmp_path / "mappings"
    # the SoD side names a catalog role: a policy on a role nothing knows is refused (it would check nothing)
    for folder, text in (("roles", CATALOG), ("sod", SOD), ("exceptions", EXCEPTIONS)):
        (maps / folder).mkdir()
        (maps / folder / "x.toml").write_text(text.format(p=p))
    setup.apply()
    with pg.admin_connect() as conn:  # a hand grant: reported as drift by the next run
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"),
                                                      sql.Identifier(f"{p}alice")))
    setup.apply()
    cfg = str(setup.path)
    quarter = campaign_for(datetime.now(UTC))
    started = run("review", "start", "-c", cfg, "--campaign", quarter)
    assert started.returncode == 0, started.stderr
    out = tmp_path / "sheets"
    assert run("review", "export", "-c", cfg, "--campaign", quarter, "--out", str(out)).returncode == 0
    sheet = out / f"{quarter}-carol.csv"
    with sheet.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        hand = r["identity"] == "alice" and r["access"] == f"{p}trade_approver"
        r.update(decision="revoke" if hand else "keep", comment="not needed for her job" if hand else "")
    with sheet.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert run("review", "import", "-c", cfg, str(sheet)).returncode == 0
    done = run("review", "apply", "-c", cfg, "--campaign", quarter)
    assert done.returncode == 0, done.stderr

    # two leavers: erin's HR leave date passed (exact), bob terminated (upper bound)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    ldap_ou.modify(erin, hrLeaveDate=yesterday.isoformat())
    ldap_ou.modify(bob, hrStatus="terminated")
    setup.apply()

    pack = tmp_path / "pack"
    done = run("report", "evidence", "-c", cfg, "--quarter", quarter, "--out", str(pack))
    assert done.returncode == 0, done.stderr
    names = {f.name for f in pack.iterdir()}
    assert {"evidence.html", "evidence.json", "review-items.csv", "revocations.csv", "leaver-latency.csv",
            "sod-exceptions.csv", "drift.csv", "manifest.json", "public-key.pem"} <= names
    data = json.loads((pack / "evidence.json").read_text())

    campaign = data["campaigns"][0]
    assert campaign["campaign"] == quarter and campaign["decided"] == campaign["items"] and campaign["revoked"] == 1
    [revoked] = data["revocations"]
    assert revoked["group"] == f"{p}trade_approver" and revoked["role"] == f"{p}alice"
    conf = setup.config()
    store = StateStore(conf.state.url, base_dir=conf.base_dir)
    try:
        record = next(r.content for r in store.iter_audit() if r.seq == revoked["audit_seq"])
    finally:
        store.close()
    assert record["kind"] == "change_applied" and "not needed for her job" in record["reason"]

    lat = data["leaver_latency"]
    assert lat["summary"]["count"] == 2 and lat["summary"]["exact"] == 1 and lat["summary"]["upper_bound"] == 1
    by_role = {x["role"]: x for x in lat["leavers"]}
    erin_lat = by_role[f"{p}erin"]
    leave_instant = f"{(yesterday + timedelta(days=1)).isoformat()}T00:00:00+00:00"  # the end of her last day (UTC)
    assert erin_lat["basis"] == "leave_date" and erin_lat["directory_change"] == leave_instant, erin_lat
    assert 0 < erin_lat["seconds"] <= 2 * 86400
    assert by_role[f"{p}bob"]["basis"] == "previous run" and by_role[f"{p}bob"]["seconds"] > 0
    secs = sorted(x["seconds"] for x in lat["leavers"])  # nearest rank over two values
    assert (lat["summary"]["p50_seconds"], lat["summary"]["p95_seconds"], lat["summary"]["p99_seconds"]) == (
        secs[0], secs[1], secs[1])
    assert data["sod_exceptions"][0]["ticket"] == "GRC-42" and data["sod_exceptions"][0]["expires"] == "2027-03-31"
    [drift] = [d for d in data["drift"] if d["role"] == f"{p}alice"]
    assert f"{p}trade_approver" in drift["message"] and drift["resolution"].startswith("no longer reported")
    assert data["audit_chain"]["ok"] and data["audit_chain"]["count"] >= revoked["audit_seq"]
    html = (pack / "evidence.html").read_text()
    assert "p95" in html and "verified" in html and "GRC-42" in html

    # the manifest verifies with the public key alone (no configuration, no state store)
    ok = run("report", "verify", str(pack), "--public-key", str(public))
    assert ok.returncode == 0 and "verified" in ok.stdout, ok.stderr

    other = tmp_path / "other-key.pem"
    assert run("audit", "keygen", "--out", str(other)).returncode == 0
    bad = run("report", "verify", str(pack), "--public-key", str(other))
    assert bad.returncode == 1 and "not by the given key" in bad.stderr and "signature" in bad.stderr

    (pack / "revocations.csv").write_text((pack / "revocations.csv").read_text().replace("not needed", "needed"))
    (pack / "notes.txt").write_text("added later")
    bad = run("report", "verify", str(pack), "--public-key", str(public))
    assert bad.returncode == 1
    assert "revocations.csv: content differs" in bad.stderr and "notes.txt: not listed" in bad.stderr

    again = run("report", "evidence", "-c", cfg, "--quarter", quarter, "--out", str(pack))
    assert again.returncode != 0 and "not empty" in again.stderr
    wrong = run("report", "evidence", "-c", cfg, "--quarter", "2026-Q5", "--out", str(tmp_path / "x"))
    assert wrong.returncode != 0 and "not a quarter" in wrong.stderr


def test_leaver_latency_starts_at_the_leave_instant(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """E2E finding: a date-only leave date takes effect at the end of that (last working)
    day in ``[lifecycle] timezone`` (docs/rules.md), but the evidence pack's "exact"
    leaver latency started at 00:00 UTC of that day: a New York leaver disabled one
    minute after her leave instant was reported 28 hours late."""
    from provisioner.core.governance.evidence import leaver_latencies

    p = role_prefix
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader", hrLeaveDate="2031-03-31"))
    extra = RELAXED_SAFETY + '\n[lifecycle]\ntimezone = "America/New_York"\n'
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, extra=extra)
    setup.apply(now=datetime(2031, 3, 1, 12, tzinfo=UTC))
    leave_instant = datetime(2031, 4, 1, 4, tzinfo=UTC)  # 2031-04-01 00:00 in New York (EDT)
    setup.apply(now=leave_instant + timedelta(minutes=1))  # (records carry the real clock's time)
    conf = setup.config()
    store = StateStore(conf.state.url, base_dir=conf.base_dir)
    try:
        (lat,) = leaver_latencies((r.seq, r.content) for r in store.iter_audit())
    finally:
        store.close()
    assert lat.basis == "leave_date" and lat.role == f"{p}ann"
    assert lat.directory_change == leave_instant, lat


def test_a_file_added_in_a_subdirectory_of_the_pack_is_caught(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """E2E finding (session 14): ``report verify`` promises that no file was added to the pack, but it
    looked at the pack's top level only: a forged ``annex/signed-off.html`` beside the signed files
    verified as "evidence pack verified"."""
    p = role_prefix
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    key = tmp_path / "audit-key.pem"
    gen = run("audit", "keygen", "--out", str(key))
    assert gen.returncode == 0, gen.stderr
    public = tmp_path / "audit-public.pem"
    public.write_text(gen.stdout)
    extra = RELAXED_SAFETY + f'\n[audit]\nsigning_key = "file:{key}"\n'
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES, extra=extra)
    setup.apply()
    pack = tmp_path / "pack"
    quarter = campaign_for(datetime.now(UTC))
    done = run("report", "evidence", "-c", str(setup.path), "--quarter", quarter, "--out", str(pack))
    assert done.returncode == 0, done.stderr
    assert run("report", "verify", str(pack), "--public-key", str(public)).returncode == 0
    (pack / "annex").mkdir()
    (pack / "annex" / "signed-off.html").write_text("<p>every item certified by the CCO</p>")
    bad = run("report", "verify", str(pack), "--public-key", str(public))
    assert bad.returncode == 1, bad.stdout
    assert "annex/signed-off.html: not listed in the manifest (added after signing)" in bad.stderr, bad.stderr
