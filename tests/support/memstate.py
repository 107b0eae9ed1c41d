"""Apply plan changes to an in-memory ActualState (for pure property tests).

This models the catalog effect of each change kind; the real adapters are
tested against real servers elsewhere.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from provisioner.core.values import marker as markers
from provisioner.core.values.model import ActualRole, ActualState, Marker
from provisioner.core.values.plan import Change, ChangeKind


def _ledger(role: ActualRole, change: Change) -> ActualRole:
    """A membership change writes the member's marker (with its ledger) beside it."""
    value = change.param("marker")
    return replace(role, marker=Marker.from_json(value)) if value is not None else role


def apply_changes(state: ActualState, changes: tuple[Change, ...]) -> ActualState:
    roles = dict(state.roles)
    for c in changes:
        if c.kind is ChangeKind.CREATE_ROLE:
            assert c.role not in roles, f"create of existing role {c.role}"
            vu = c.param("valid_until")
            m = markers.parse(markers.PREFIX + __import__("json").dumps(c.param("marker")))
            roles[c.role] = ActualRole(c.role, bool(c.param("login")), valid_until=_dt(vu), marker=m)
        elif c.kind is ChangeKind.ALTER_ROLE:
            r = roles[c.role]
            if ("login", c.param("login")) in c.params:
                r = replace(r, login=bool(c.param("login")))
            if any(k == "valid_until" for k, _ in c.params):
                r = replace(r, valid_until=_dt(c.param("valid_until")))
            roles[c.role] = r
        elif c.kind is ChangeKind.GRANT_MEMBERSHIP:
            assert c.param("group") in roles, f"grant of missing group {c.param('group')}"
            r = roles[c.role]
            roles[c.role] = _ledger(replace(r, member_of=r.member_of | {c.param("group")}), c)
        elif c.kind is ChangeKind.REVOKE_MEMBERSHIP:
            r = roles[c.role]
            roles[c.role] = _ledger(replace(r, member_of=r.member_of - {c.param("group")}), c)
        elif c.kind is ChangeKind.SET_MARKER:
            value = c.param("marker")
            roles[c.role] = replace(roles[c.role], marker=Marker.from_json(value) if value is not None else None)
        elif c.kind is ChangeKind.RENAME_ROLE:
            old = roles.pop(c.param("old_name"))
            roles[c.role] = replace(old, name=c.role)
            for name, r in list(roles.items()):
                if c.param("old_name") in r.member_of:
                    roles[name] = replace(r, member_of=(r.member_of - {c.param("old_name")}) | {c.role})
        elif c.kind is ChangeKind.TERMINATE_SESSIONS:
            sessions = dict(state.extra.get("sessions") or {})
            sessions.pop(c.role, None)
            state = replace(state, extra={**state.extra, "sessions": sessions})
        elif c.kind is ChangeKind.DROP_ROLE:
            del roles[c.role]
            for name, r in list(roles.items()):
                if c.role in r.member_of:
                    roles[name] = replace(r, member_of=r.member_of - {c.role})
        else:
            raise AssertionError(f"unexpected change kind {c.kind}")
    return replace(state, roles=roles)


def _dt(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None
