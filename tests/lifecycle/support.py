"""Helpers for the lifecycle tests against real slapd and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provisioner.core.governance.audit import EventKind
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import RELAXED_SAFETY, Setup, make_setup
from tests.support.e2e import person as person  # re-exported for the lifecycle tests
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when = {{ attr = "department", equals = "Trading" }}

[[rule]]
id = "operations"
description = "operations settle"
grant = ["{p}ops_settlement", "{p}trade_reader"]
when = {{ attr = "department", equals = "Operations" }}
"""

STRICT = """
[safety]
max_revocation_share = 0.2
max_revocations = 500
max_identity_drop = 0.2
"""

RELAXED = RELAXED_SAFETY



def setup(tmp_path: Path, ldap_ou: LdapOu, prefix: str, extra: str = RELAXED, **source: Any) -> Setup:
    """A least-privilege setup whose source name is unique to the test."""
    cfg = ldap_ou.config(name=f"{prefix}src", **source)
    return make_setup(tmp_path, cfg, prefix, rules=RULES, extra=extra)


def access(prefix: str) -> dict[str, tuple[bool, frozenset[str]]]:
    """role -> (can log in, groups) for every role carrying ``prefix``."""
    with pg.admin_connect() as conn:
        rows = conn.execute(
            "SELECT r.rolname, r.rolcanlogin AND (r.rolvaliduntil IS NULL OR r.rolvaliduntil > now()),"
            " coalesce(array_agg(g.rolname) FILTER (WHERE g.rolname IS NOT NULL), '{}')"
            " FROM pg_roles r LEFT JOIN pg_auth_members am ON am.member = r.oid"
            " LEFT JOIN pg_roles g ON g.oid = am.roleid WHERE starts_with(r.rolname, %s) GROUP BY 1, 2",
            (prefix,),
        ).fetchall()
    return {name: (bool(login), frozenset(groups)) for name, login, groups in rows}


def more_access(before: tuple[bool, frozenset[str]] | None, after: tuple[bool, frozenset[str]] | None) -> bool:
    if after is None:
        return False
    if before is None:
        return after[0] or bool(after[1])
    return (after[0] and not before[0]) or bool(after[1] - before[1])


def audit_kinds(setup: Setup) -> list[tuple[str, str | None]]:
    cfg = setup.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        return [(r.content["kind"], r.content.get("role")) for r in store.iter_audit()]
    finally:
        store.close()


def applied_changes(setup: Setup) -> list[dict[str, Any]]:
    cfg = setup.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        return [r.content["change"] for r in store.iter_audit() if r.content["kind"] == EventKind.CHANGE_APPLIED]
    finally:
        store.close()


def day(n: int, hour: int = 9) -> datetime:
    """Simulated day ``n`` (1-based) of the scenario, at ``hour`` UTC."""
    return datetime(2031, 1, 1, hour, tzinfo=UTC) + timedelta(days=n - 1)


def edit_config(setup: Setup, old: str, new: str) -> None:
    text = setup.path.read_text()
    assert old in text, old
    setup.path.write_text(text.replace(old, new))
