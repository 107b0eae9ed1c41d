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
    code = (
        "import sys, provisioner.core.diff, provisioner.core.rules, provisioner.core.safety, "
        "provisioner.core.desired, provisioner.core.plan, provisioner.core.explain;"
        "bad = [m for m in ('ldap3','msal','sqlalchemy','apscheduler','psycopg','pymysql') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"core pulled in I/O libraries: {out}"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "provisioner").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert big == {}, f"modules over 450 lines: {big}"
