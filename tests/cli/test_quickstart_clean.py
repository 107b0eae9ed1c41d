"""The quickstart's commands (scripts/quickstart after its one-time install) print no
warning: no Python or library warnings (pgserver/platformdirs' RuntimeDirWarning),
no superuser or CREATEROLE warning for the embedded demo cluster.  The sample
config, rules and schema are copied to a temporary directory, so the embedded
PostgreSQL and the state live there.

The shell script's own install step is checked separately: it skips pip when
``.venv`` holds an install of the same pyproject.toml."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


def warnings_in(stderr: str) -> list[str]:
    """Lines that are warnings, other than the alert channel's (sensitive-role alerts are the point)."""
    return [
        line
        for line in stderr.splitlines()
        if ("warning" in line.lower() or "deprecat" in line.lower()) and "alert " not in line
    ]


def test_quickstart_commands_print_no_warnings(tmp_path: Path) -> None:
    for part in ("examples", "mappings"):
        shutil.copytree(ROOT / part, tmp_path / part)
    cfg = "examples/quickstart.toml"
    steps = [
        [str(BIN / "provisioner"), "validate", "-c", cfg],
        [str(BIN / "provisioner"), "rules", "test", "-c", cfg],
        [str(BIN / "python"), str(ROOT / "scripts" / "load-example-schema"), cfg, "examples/trading-schema.sql"],
        [str(BIN / "provisioner"), "plan", "-c", cfg, "--out", ".provisioner/plan.json", "--detailed-exitcode"],
        [str(BIN / "provisioner"), "apply", "-c", cfg, "--plan", ".provisioner/plan.json", "--reason", "test"],
        [str(BIN / "provisioner"), "plan", "-c", cfg, "--detailed-exitcode"],
        [str(BIN / "provisioner"), "explain", "-c", cfg, "bkaczmarek"],
    ]
    try:
        for step in steps:
            res = run(tmp_path, *step)
            assert res.returncode in (0, 2), (step, res.stderr)
            assert warnings_in(res.stderr) == [], (step, res.stderr)
    finally:
        stop_embedded(tmp_path / ".provisioner" / "pgdata")


def stop_embedded(pgdata: Path) -> None:
    pg_ctl = shutil.which("pg_ctl") or next(
        Path(sys.prefix).glob("lib/python*/site-packages/pgserver/pginstall/bin/pg_ctl"), None
    )
    if pg_ctl is not None and (pgdata / "postmaster.pid").exists():
        subprocess.run([str(pg_ctl), "-D", str(pgdata), "stop", "-m", "fast"], capture_output=True, check=False)


def test_quickstart_skips_pip_when_installed(tmp_path: Path) -> None:
    """A copy of the script beside a fake .venv whose stamp matches pyproject.toml: no install step."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "quickstart", tmp_path / "scripts" / "quickstart")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    calls = tmp_path / "calls"
    for name in ("provisioner", "pip"):
        (venv_bin / name).write_text(f'#!/bin/sh\necho {name} "$@" >> {calls}\nexit 1\n')
        (venv_bin / name).chmod(0o755)
    (venv_bin / "python").write_text(f'#!/bin/sh\necho python "$@" >> {calls}\nexit 0\n')
    (venv_bin / "python").chmod(0o755)
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    (tmp_path / ".venv" / ".provisioner-quickstart").write_text(stamp + "\n")
    res = run(tmp_path, "bash", "scripts/quickstart")
    assert "installing" not in res.stdout
    assert not any(line.startswith("pip ") for line in calls.read_text().splitlines())
    assert "provisioner validate" in calls.read_text(), "went straight to the first command"
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n# changed\n")
    res = run(tmp_path, "bash", "scripts/quickstart")
    assert "== installing provisioner into .venv" in res.stdout
    assert any(line.startswith("pip install") for line in calls.read_text().splitlines())
