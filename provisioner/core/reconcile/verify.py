"""After apply: does the re-read catalog show every applied change?

PostgreSQL 16 can report success for a REVOKE that changed nothing (the
membership was granted by another grantor), so success is only what the
catalog shows afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from provisioner.core.values.model import ActualState, Marker
from provisioner.core.values.plan import Change, ChangeKind


def verify(changes: Iterable[Change], after: ActualState) -> list[str]:
    problems = []
    last: dict[str, Change] = {}
    touched: dict[str, set[str] | None] = {}  # role -> ledger entries these changes decide (None: all)
    for change in changes:
        problem = _check(change, after)
        if problem:
            problems.append(f"{change.describe()}: {problem}")
        if any(key == "marker" for key, _ in change.params) and change.kind is not ChangeKind.DROP_ROLE:
            last[change.role] = change
            seen = touched.setdefault(change.role, set())
            if change.kind in (ChangeKind.SET_MARKER, ChangeKind.CREATE_ROLE):  # the whole ledger
                touched[change.role] = None
            elif seen is not None and change.kind in (ChangeKind.GRANT_MEMBERSHIP, ChangeKind.REVOKE_MEMBERSHIP):
                seen.add(str(change.param("group")))
    for role, change in last.items():  # the marker the changes wrote last: installation and ledger too
        now = after.roles.get(role)
        if now is not None:
            problem = _check_ledger(change.param("marker"), now.marker, touched[role])
            if problem:
                problems.append(f"{change.describe()}: {problem}")
    return problems


def _check_ledger(expected: object, actual: Marker | None, decided: set[str] | None) -> str | None:
    """``decided``: the ledger entries the verified changes set (None: the whole ledger), so
    that one change of a plan verifies on its own (recovery of an interrupted apply)."""
    if not isinstance(expected, dict) or actual is None:
        return None  # reported by the change's own check
    want = _expected(expected)
    if want is None:
        return "unreadable expected marker"
    if want.instance != actual.instance:
        return f"marker names installation {actual.instance!r}, expected {want.instance!r}"
    wanted, have = want.granted or frozenset(), actual.granted or frozenset()
    scope = (wanted | have) if decided is None else decided
    if {g for g in scope if g in wanted} != {g for g in scope if g in have}:
        return f"membership ledger is {sorted(have)}, expected {sorted(wanted)}"
    return None


def _check(change: Change, after: ActualState) -> str | None:
    role = after.roles.get(change.role)
    kind = change.kind
    if kind is ChangeKind.DROP_ROLE:
        return "role still exists" if role is not None else None
    if kind is ChangeKind.TERMINATE_SESSIONS:
        left = after.sessions.get(change.role, 0)
        return f"{left} session(s) still open (does the provisioner hold pg_signal_backend?)" if left else None
    if kind in (ChangeKind.GRANT_PRIVILEGE, ChangeKind.REVOKE_PRIVILEGE):
        from provisioner.core.privileges.diff import verify_privilege

        return verify_privilege(change, after)
    if role is None:
        return "role does not exist after apply"
    if kind is ChangeKind.GRANT_MEMBERSHIP:
        return None if change.param("group") in role.member_of else "membership missing after apply"
    if kind is ChangeKind.REVOKE_MEMBERSHIP:
        return (
            "membership still present (granted by another grantor?)"
            if change.param("group") in role.member_of
            else None
        )
    if kind is ChangeKind.ALTER_ROLE and any(key == "default_role" for key, _ in change.params):
        default = (after.default_roles or {}).get(change.role)
        if default != change.param("default_role"):
            return f"default role is {default!r}, expected {change.param('default_role')!r}"
    if kind in (ChangeKind.ALTER_ROLE, ChangeKind.CREATE_ROLE):
        login = change.param("login")
        if login is not None and role.login != login:
            return f"login is {role.login}, expected {login}"
        if ("valid_until", change.param("valid_until")) in change.params or kind is ChangeKind.CREATE_ROLE:
            expected = change.param("valid_until")
            want = datetime.fromisoformat(expected) if expected else None
            if role.valid_until != want:
                return f"valid until {role.valid_until}, expected {want}"
    if kind in (ChangeKind.CREATE_ROLE, ChangeKind.SET_MARKER):
        return _check_marker(change.param("marker"), role.marker)
    if kind is ChangeKind.RENAME_ROLE and change.param("old_name") in after.roles:
        return "old name still exists"
    return None


def _check_marker(expected: object, actual: Marker | None) -> str | None:
    if expected is None:
        return None if actual is None else "marker still present"
    if not isinstance(expected, dict):
        return "unreadable expected marker"
    want = _expected(expected)
    if want is None or actual is None:
        return "marker missing after apply"
    if (want.kind, want.stable_id, want.source) != (actual.kind, actual.stable_id, actual.source):
        return f"marker is {actual}, expected {want}"
    return None


def _expected(data: dict[str, Any]) -> Marker | None:
    """The marker a change's ``marker`` parameter (``Marker.to_json()``) describes, as the
    comment it wrote would read back; None when malformed.  Read from the mapping itself: a
    first sync verifies 100,000s of these, and a JSON round trip each cost 0.4 s at 50,000 people."""
    try:
        return Marker.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None
