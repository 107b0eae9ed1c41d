"""The architecture is a contract, checked on every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_imports_no_io_library_at_runtime() -> None:
    core = sorted(p.stem for p in (ROOT / "provisioner" / "core").glob("*.py") if p.stem != "__init__")
    libs = ("ldap3", "msal", "requests", "sqlalchemy", "apscheduler", "psycopg", "pymysql", "structlog", "click", "rich")
    code = (
        "import importlib, sys\n"
        f"for m in {core!r}: importlib.import_module('provisioner.core.' + m)\n"
        f"print(','.join(m for m in {libs!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert len(core) > 20
    assert out == "", f"core pulled in I/O libraries: {out}"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "provisioner").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert big == {}, f"modules over 450 lines: {big}"
