"""ActualState.fingerprint: what a saved plan's staleness check covers, and that its
memo of the scope-independent part never outlives the roles it was computed from; and
what verify and recovery read back after an apply (readback_scope)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from provisioner.core.values.model import ActualRole, ActualState, Marker, RoleKind


def _state() -> ActualState:
    roles = [
        ActualRole("ann", True, marker=Marker(RoleKind.USER, "1", "ldap"), member_of=frozenset({"traders"})),
        ActualRole("bob", True, marker=Marker(RoleKind.USER, "2", "ldap")),
        ActualRole("eve", True, marker=Marker(RoleKind.USER, "3", "entra")),
        ActualRole("traders", False, marker=Marker(RoleKind.GROUP)),
        ActualRole("hand", False),
        ActualRole("app", True),
    ]
    return ActualState("pg", {r.name: r for r in roles}, "svc")


SCOPE, SOURCES = frozenset({"hand"}), frozenset({"ldap"})

CHANGED = {
    "a managed login role of the source": ("bob", {"login": False}),
    "its expiry": ("ann", {"valid_until": datetime(2031, 1, 1, tzinfo=UTC)}),
    "its memberships": ("bob", {"member_of": frozenset({"traders"})}),
    "a group a managed role is in": ("traders", {"createdb": True}),
    "a role the plan names": ("hand", {"login": True}),
}
UNCHANGED = {
    "a role of another source": ("eve", {"login": False}),
    "an unrelated hand-made role": ("app", {"createdb": True}),
}


def _with(state: ActualState, name: str, **fields: object) -> ActualState:
    roles = dict(state.roles)
    roles[name] = replace(roles[name], **fields)  # type: ignore[arg-type]
    return replace(state, roles=roles)  # shares the memo dictionary, not the roles


@pytest.mark.parametrize("what", sorted(CHANGED))
def test_changes_in_scope_change_the_fingerprint_even_after_memoising(what: str) -> None:
    state = _state()
    before = state.fingerprint(SCOPE, SOURCES)
    assert state.fingerprint(SCOPE, SOURCES) == before  # the memoised path agrees with the first
    name, fields = CHANGED[what]
    assert _with(state, name, **fields).fingerprint(SCOPE, SOURCES) != before


@pytest.mark.parametrize("what", sorted(UNCHANGED))
def test_roles_outside_the_scope_do_not_matter(what: str) -> None:
    state = _state()
    name, fields = UNCHANGED[what]
    assert _with(state, name, **fields).fingerprint(SCOPE, SOURCES) == state.fingerprint(SCOPE, SOURCES)


def test_equal_states_agree_and_scope_sources_and_whole_catalog_differ() -> None:
    a, b = _state(), _state()
    assert a.fingerprint(SCOPE, SOURCES) == b.fingerprint(SCOPE, SOURCES)
    assert a.fingerprint(SCOPE, SOURCES) != a.fingerprint(frozenset(), SOURCES)
    assert a.fingerprint(SCOPE, SOURCES) != a.fingerprint(SCOPE, None)
    assert a.fingerprint() != a.fingerprint(SCOPE, SOURCES)
    assert _with(a, "app", createdb=True).fingerprint() != a.fingerprint()


def test_readback_scope_names_every_touched_role_or_the_whole_catalog_for_privileges() -> None:
    from provisioner.core.values.model import Reason
    from provisioner.core.values.plan import ChangeKind, make_change, readback_scope

    why = [Reason("t", "test")]
    roles = [
        make_change(ChangeKind.GRANT_MEMBERSHIP, "ann", why, group="traders"),
        make_change(ChangeKind.RENAME_ROLE, "daniel", why, old_name="dan"),
        make_change(ChangeKind.TERMINATE_SESSIONS, "cat", why),
    ]
    assert readback_scope(roles) == {"ann", "daniel", "dan", "cat"}
    privilege = make_change(ChangeKind.GRANT_PRIVILEGE, "traders", why, privilege="SELECT", object="t")
    assert readback_scope([*roles, privilege]) is None
    assert readback_scope(roles, most=3) is None  # a large plan reads the whole catalog back


def test_the_fingerprint_hashes_each_rows_digest_in_name_order() -> None:
    """Fingerprint v4: the head, then per role (sorted by name) the SHA-256 of its digest row's
    compact JSON; a scoped one puts the digest of the managed roles' part first.  Anyone can
    recompute it from the rows, and the daemon keeps 32 bytes per role instead of the row's text."""
    import hashlib
    import json

    state = _state()

    def rows(names: list[str]) -> bytes:
        texts = [json.dumps(state.roles[n].digest_row(), separators=(",", ":")).encode() for n in sorted(names)]
        return b"".join(hashlib.sha256(t).digest() for t in texts)

    head = json.dumps({"v": 4, "target": "pg", "scope": None}, sort_keys=True, separators=(",", ":")).encode()
    assert state.fingerprint() == "sha256:" + hashlib.sha256(head + rows(list(state.roles))).hexdigest()

    base_names = ["ann", "bob", "traders"]  # the source's managed login roles and their groups
    head = json.dumps({"v": 4, "target": "pg", "scope": ["hand"]}, sort_keys=True, separators=(",", ":")).encode()
    base = hashlib.sha256(rows(base_names)).digest()
    expected = hashlib.sha256(head + base + rows(["hand"])).hexdigest()
    assert state.fingerprint(SCOPE, SOURCES) == "sha256:" + expected
