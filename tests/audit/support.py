"""A minimal config + mappings (with a role catalog) for alert tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from provisioner.config import Config, load_config
from provisioner.core.governance.audit import AuditEvent, EventKind
from tests.support.config import write_config

ROLES = """
[role.{p}trade_approver]
description = "approve trades"
owner = "CCO"
sensitivity = "critical"

[role.{p}trade_executor]
description = "execute trades"
owner = "Head of Trading"
sensitivity = "high"

[role.{p}trade_reader]
description = "read trades"
owner = "Head of Trading"
sensitivity = "medium"
"""


def write_catalog(mappings: Path, prefix: str) -> None:
    (mappings / "roles").mkdir(parents=True, exist_ok=True)
    (mappings / "roles" / "catalog.toml").write_text(ROLES.format(p=prefix))


def alert_config(tmp: Path, alerts: str, prefix: str = "") -> Config:
    """Config with an (unused) LDIF source and PostgreSQL target, a catalog and ``alerts`` TOML."""
    (tmp / "mappings" / "rules").mkdir(parents=True)
    (tmp / "mappings" / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "r"\ndescription = "d"\ngrant = ["x"]\nwhen = { attr = "department", equals = "x" }\n'
    )
    write_catalog(tmp / "mappings", prefix)
    (tmp / "dir.ldif").write_text("")
    write_config(
        tmp / "config.toml",
        sources=[{"name": "hr", "type": "ldif", "path": "dir.ldif"}],
        targets=[{"name": "pg", "type": "postgresql", "dsn": "host=127.0.0.1 dbname=none"}],
        state_url=f"sqlite:///{tmp / 'state.db'}",
        log_level=None,
        extra=alerts,
    )
    return load_config(tmp / "config.toml")


def grant(run_id: str, at: datetime, member: str, group: str, kind: str = "grant_membership") -> AuditEvent:
    change: dict[str, Any] = {
        "kind": kind,
        "role": member,
        "params": {"group": group},
        "reasons": [{"rule": "desk-traders", "text": "matched", "attributes": {"department": "Trading"}}],
        "summary": f"{kind.split('_')[0]} {group} to {member}",
    }
    return AuditEvent(
        run_id, at, "svc", "schedule", EventKind.CHANGE_APPLIED, "pg", member, change, "desk-traders: Trading"
    )
