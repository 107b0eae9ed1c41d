"""docs/mysql.md "What differs from PostgreSQL, and why" is derived from the capabilities: one
row per field of Capabilities, with PostgreSQL's and MariaDB's declared values (issue 20)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from provisioner.core.values.capabilities import MARIADB, POSTGRESQL, Capabilities

DOC = Path(__file__).resolve().parents[2] / "docs" / "mysql.md"


def _shown(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def test_the_difference_table_is_every_capability_with_its_declared_values() -> None:
    text = DOC.read_text()
    section = text[text.index("## What differs from PostgreSQL, and why (capabilities)"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    documented = {f.name for f in dataclasses.fields(Capabilities) if not f.name.endswith("_why_not")}
    assert set(rows) == documented
    for name, (pg, maria) in rows.items():
        assert (pg, maria) == (_shown(getattr(POSTGRESQL, name)), _shown(getattr(MARIADB, name))), name
