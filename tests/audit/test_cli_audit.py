"""provisioner audit verify / show / export as the installed command: exit codes and
messages on a bulk-loaded SQLite store (no directory or database needed)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.store.state import StateStore
from tests.audit.chain import content
from tests.audit.support import alert_config

EXE = str(Path(sys.executable).with_name("provisioner"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_verify_exit_codes_checkpoint_file_and_keys(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert run("audit", "keygen", "--out", str(key)).returncode == 0
    assert run("audit", "keygen", "--out", str(key)).returncode == 1  # never overwrites a key
    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cfg = alert_config(tmp_path / "c", f'[audit]\nsigning_key = "file:{key}"')
    store = StateStore(cfg.state.url)
    store.audit.append_contents(content(i) for i in range(1, 301))
    store.close()
    c = str(cfg.path)

    res = run("audit", "verify", "-c", c)  # a key is configured, nothing signed: not intact
    assert res.returncode == 1 and "BROKEN signatures: no-checkpoint: 300 record(s) but no signed checkpoint" in res.stdout
    cp = tmp_path / "cp.json"
    res = run("audit", "checkpoint", "-c", c, "--out", str(cp))  # never signs what nobody vouched for
    assert res.returncode == 1 and "refusing to sign" in res.stderr
    assert run("audit", "checkpoint", "-c", c, "--out", str(cp), "--adopt").returncode == 0  # after a full verify
    assert json.loads(cp.read_text())["head_seq"] == 300
    assert run("audit", "verify", "-c", c, "--checkpoint", str(cp)).returncode == 0

    res = run("audit", "verify", "-c", c, "--checkpoint", str(cp), "--public-key", str(other))
    assert res.returncode == 1 and "not by the trusted key" in res.stdout

    forged = json.loads(cp.read_text())
    forged["head_seq"] = forged["count"] = 250
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    res = run("audit", "verify", "-c", c, "--checkpoint", str(tmp_path / "forged.json"))
    assert res.returncode == 1 and "signature does not match" in res.stdout

    db = sqlite3.connect(tmp_path / "c" / "state.db")
    db.execute("DELETE FROM provisioner_audit WHERE seq > 297")
    db.execute("DELETE FROM provisioner_audit_checkpoints")  # the attacker removes the stored one too
    db.commit()
    db.close()
    res = run("audit", "verify", "-c", c)  # the chain alone cannot tell; the missing checkpoints can
    assert res.returncode == 1 and "no-checkpoint" in res.stdout and "first bad" not in res.stdout
    res = run("audit", "verify", "-c", c, "--checkpoint", str(cp))
    assert res.returncode == 1
    assert "BROKEN: first bad record seq 298: truncated: chain ends at seq 297" in res.stdout


def test_show_and_export_filters(tmp_path: Path) -> None:
    cfg = alert_config(tmp_path, "")
    store = StateStore(cfg.state.url)
    store.audit.append_contents(content(i) for i in range(1, 201))
    store.close()
    c = str(cfg.path)
    res = run("audit", "show", "-c", c, "--user", "user005", "--since", "2026-01-05T09:00:00", "--until", "2026-01-05T09:02:00")
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines()[1:] if line.strip()]
    assert [int(line.split()[0]) for line in lines] == [5, 102]  # user005 is i % 97 == 5, both before 09:02
    res = run("audit", "show", "-c", c, "--role", "trade_approver", "--run", "00000000-0000-0000-0000-000000000001")
    assert [int(x.split()[0]) for x in res.stdout.splitlines()[1:]] == [103, 107, 111, 115, 119, 123, 127, 131, 135, 139, 143, 147, 151, 155, 159, 163, 167, 171, 175, 179, 183, 187, 191, 195, 199]
    out = tmp_path / "e.jsonl"
    assert run("audit", "export", "-c", c, "--format", "jsonl", "--out", str(out), "--kind", "run_failed").returncode == 0
    assert out.read_text() == ""
    res = run("audit", "export", "-c", c, "--format", "csv", "--out", "-", "--target", "pg", "--user", "user001")
    assert res.returncode == 0 and res.stdout.splitlines()[0].startswith("seq,at,run_id,kind")
    assert len(res.stdout.splitlines()) == 1 + 3  # 1, 98, 195
    assert run("audit", "show", "-c", c, "--kind", "nonsense").returncode == 2
