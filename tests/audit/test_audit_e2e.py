"""End to end against slapd and PostgreSQL, through the installed command: a real
apply produces change records, a signed checkpoint and alerts (one channel down,
the run still succeeds); audit verify / show / export; one row edited with sqlite3
and verify names it; an interrupted apply is recovered by the next run."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.core.governance.audit import EventKind, chain_hash
from provisioner.store.state import StateStore
from tests.audit.servers import closed_port, smtp_server
from tests.audit.support import write_catalog
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

EXE = str(Path(sys.executable).with_name("provisioner"))



def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=full, timeout=120, check=False)


def events(stderr: str) -> list[dict[str, object]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_apply_records_checkpoint_alerts_and_verify_catches_an_edit(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("ben", **person("Operations", "Settlements Analyst"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    write_catalog(tmp_path / "mappings", p)
    key = tmp_path / "keys" / "audit.pem"
    key.parent.mkdir()
    res = run("audit", "keygen", "--out", str(key))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600
    (tmp_path / "pub.pem").write_text(res.stdout)

    with smtp_server(tmp_path / "keys") as box:
        setup.path.write_text(
            setup.path.read_text().replace('log_level = "warning"', 'log_level = "info"')
            + f"""
[audit]
signing_key = "file:{key}"

[alerts]
timeout = 2

[[alerts.webhooks]]
name = "down"
url = "env:TEST_HOOK"

[alerts.email]
host = "127.0.0.1"
port = {box.port}
from = "provisioner@example.test"
to = ["security@example.test"]
username = "alerts"
password = "env:TEST_SMTP_PASSWORD"
ca_file = "{box.ca_file}"
"""
        )
        env = {"TEST_HOOK": f"http://127.0.0.1:{closed_port()}/", "TEST_SMTP_PASSWORD": "s3cret-pw"}
        cfg = str(setup.path)
        res = run("apply", "-c", cfg, "--reason", "CHG-4711", "--actor", "jdoe", env=env)
        assert res.returncode == 0, res.stderr
        assert memberships(p)[f"{p}ann"] == {f"{p}trade_executor", f"{p}trade_reader"}
        logged = events(res.stderr)
        assert any(e["event"] == "alert_channel_failed" and e["channel"] == "webhook:down" for e in logged)
        assert "Alerts: 1 sent, 1 waiting for retry (webhook:down failing)" in res.stderr  # one line, not the alerts
        subjects = sorted(str(m["Subject"]) for m in box.messages)
    # ann gets trade_executor (high), ben ops_settlement (not in this catalog), both trade_reader (medium)
    assert subjects == [
        "[provisioner critical] Alerts cannot be delivered to webhook:down",  # the dead channel, on the live one
        f"[provisioner warning] Sensitive role {p}trade_executor granted to {p}ann",
    ]
    assert "s3cret-pw" not in res.stderr

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        rows = list(store.iter_audit())
        checkpoint = store.audit.latest_checkpoint()
    finally:
        store.close()
    kinds = [r.content["kind"] for r in rows]
    assert kinds[:3] == [EventKind.AUTHORISED, EventKind.RUN_PLANNED, EventKind.APPLY_INTENT]
    assert kinds[-3:] == [EventKind.APPLY_COMPLETED, EventKind.RUN_FINISHED, EventKind.RUN_RECORDED]
    grant = next(r.content for r in rows if r.content["kind"] == "change_applied" and r.content["role"] == f"{p}ann"
                 and r.content["change"]["params"].get("group") == f"{p}trade_executor")
    assert grant["actor"].endswith("(jdoe)") and grant["trigger"] == "manual"
    assert "desk-traders" in grant["reason"] and "operator: CHG-4711" in grant["reason"]
    assert grant["change"]["reasons"][0]["attributes"] == {"department": "Trading", "title": "Equity Trader"}
    assert grant["target"] == "pg" and grant["at"].endswith("+00:00")
    assert checkpoint is not None and checkpoint.checkpoint.head_seq == len(rows)

    assert run("audit", "verify", "-c", cfg).returncode == 0
    cp_file = tmp_path / "cp.json"
    res = run("audit", "checkpoint", "-c", cfg, "--out", str(cp_file))
    assert res.returncode == 0, res.stderr
    assert set(json.loads(cp_file.read_text())) == {
        "count", "head_seq", "head_hash", "at", "key_id", "signature", "public_key", "n", "from_seq", "from_hash"}
    res = run("audit", "verify", "-c", cfg, "--checkpoint", str(cp_file), "--public-key", str(tmp_path / "pub.pem"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(rows)} record(s) checked" in res.stdout and "OK: the audit trail is intact" in res.stdout

    res = run("audit", "show", "-c", cfg, "--user", f"{p}ann", "--kind", "change_applied")
    assert res.returncode == 0 and f"grant {p}trade_executor to {p}ann" in res.stdout
    assert f"{p}ben" not in res.stdout
    res = run("audit", "show", "-c", cfg, "--role", f"{p}trade_reader", "--since", "2000-01-01", "--until", "2999-01-01")
    assert res.returncode == 0 and res.stdout.count(f"grant {p}trade_reader") == 2
    assert run("audit", "show", "-c", cfg, "--since", "yesterday").returncode == 2

    out = tmp_path / "evidence.jsonl"
    assert run("audit", "export", "-c", cfg, "--format", "jsonl", "--out", str(out)).returncode == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in exported] == list(range(1, len(rows) + 1))
    assert all(chain_hash(e["seq"], e["prev_hash"], e["content"]) == e["hash"] for e in exported)  # re-verifiable
    out_csv = tmp_path / "evidence.csv"
    assert run("audit", "export", "-c", cfg, "--format", "csv", "--out", str(out_csv), "--user", f"{p}ann").returncode == 0
    with out_csv.open() as fh:
        table = list(csv.DictReader(fh))
    assert table and all(r["role"] == f"{p}ann" and r["hash"].startswith("sha256:") for r in table)

    victim = next(r.seq for r in rows if r.content["kind"] == "change_applied")
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("UPDATE provisioner_audit SET content = replace(content, 'CHG-4711', 'CHG-0000') WHERE seq = ?", (victim,))
    db.commit()
    db.close()
    res = run("audit", "verify", "-c", cfg, "--checkpoint", str(cp_file))
    assert res.returncode == 1
    assert f"BROKEN: first bad record seq {victim}: edited: content does not match the stored hash" in res.stdout


class Crash(BaseException):
    """Stands in for the process dying right after the target committed."""


def test_interrupted_apply_is_recovered_next_run(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = role_prefix
    ldap_ou.add_user("cat", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(), p)
    from provisioner.engine import execute as runtime

    real = runtime._applied_records

    def crash(*args: object, **kw: object) -> object:
        raise Crash

    monkeypatch.setattr(runtime, "_applied_records", crash)
    t0 = datetime.now(UTC)
    with pytest.raises(Crash):
        setup.apply(now=t0)
    monkeypatch.setattr(runtime, "_applied_records", real)
    assert memberships(p)[f"{p}cat"] == {f"{p}trade_executor", f"{p}trade_reader"}  # committed, unrecorded

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert [r.content["kind"] for r in store.iter_audit()] == ["run_planned", "apply_intent", "apply_begun"]
    finally:
        store.close()

    setup.apply(now=t0 + timedelta(minutes=1))  # younger than recover_after: left alone
    setup.apply(now=t0 + timedelta(minutes=11))
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        rows = [r.content for r in store.iter_audit()]
    finally:
        store.close()
    intent = next(r for r in rows if r["kind"] == "apply_intent")
    recovered = [r for r in rows if r["kind"] == "change_recovered"]
    assert len(recovered) == len(intent["after"]["changes"]) >= 3
    assert all(r["after"]["recovered"] and r["after"]["interrupted_run"] == intent["run_id"] for r in recovered)
    assert {r["change"]["params"].get("group") for r in recovered} >= {f"{p}trade_executor", f"{p}trade_reader"}
    closing = [r for r in rows if r["kind"] == "apply_completed" and r["after"].get("recovered")]
    assert len(closing) == 1 and closing[0]["run_id"] == intent["run_id"]
    assert closing[0]["after"]["committed"] == len(recovered)
