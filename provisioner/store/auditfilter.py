"""Filters over the audit trail (``audit show / export``, reviews): columns in SQL, the rest in Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table


@dataclass(frozen=True, slots=True)
class AuditFilter:
    user: str | None = None
    """the role the change was made to (a login role)"""
    role: str | None = None
    """a granted / revoked group role, or the role itself"""
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    run_id: str | None = None
    kinds: tuple[str, ...] = ()



def where(q: Any, f: AuditFilter, audit: Table) -> Any:
    """``q`` narrowed by the filter's column conditions on the ``audit`` table."""
    if f.user:
        q = q.where(audit.c.role == f.user)
    if f.target:
        q = q.where(audit.c.target == f.target)
    if f.since:
        q = q.where(audit.c.at >= f.since)
    if f.until:
        q = q.where(audit.c.at <= f.until)
    if f.run_id:
        q = q.where(audit.c.run_id == f.run_id)
    if f.kinds:
        q = q.where(audit.c.kind.in_(f.kinds))
    return q


def matches(content: dict[str, Any], f: AuditFilter) -> bool:
    if not f.role:
        return True
    change = content.get("change") or {}
    params = change.get("params") or {} if isinstance(change, dict) else {}
    return f.role in (content.get("role"), params.get("group"))
