"""The fingerprint's scope-independent part is kept by the daemon's WarmState, not inside
the frozen ActualState: same digests with or without the memo, reused only for the very
same roles mapping, and no core value carries a cache."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from provisioner.core.values.model import ActualRole, ActualState, FingerprintMemo, Marker, RoleKind
from provisioner.engine.warm import WarmState

CORE = Path(__file__).resolve().parents[2] / "provisioner" / "core"


def _state(*extra: ActualRole) -> ActualState:
    roles = {
        r.name: r
        for r in (
            ActualRole("alice", True, marker=Marker(RoleKind.USER, "1", "ldap"), member_of=frozenset({"traders"})),
            ActualRole("bob", True, marker=Marker(RoleKind.USER, "2", "ad"), member_of=frozenset({"traders"})),
            ActualRole("traders", False, marker=Marker(RoleKind.GROUP)),
            ActualRole("dba_made", False),
            *extra,
        )
    }
    return ActualState("pg", roles, "provisioner")


def test_same_fingerprint_with_and_without_the_memo() -> None:
    memo = FingerprintMemo()
    state = _state()
    for scope, sources in [(frozenset({"alice"}), frozenset({"ldap"})), (frozenset({"dba_made"}), None)]:
        plain = state.fingerprint(scope, sources)
        assert state.fingerprint(scope, sources, memo) == plain
        assert state.fingerprint(scope, sources, memo) == plain  # from the memo
    assert state.fingerprint(frozenset(), frozenset({"ldap"})) != state.fingerprint(frozenset(), frozenset({"ad"}))


def test_memo_is_used_for_the_same_roles_only() -> None:
    memo = FingerprintMemo()
    state = _state()
    sources = frozenset({"ldap"})
    first = state.fingerprint(frozenset(), sources, memo)
    assert memo.get(state, sources) is not None
    reused = dataclasses.replace(state, sessions={"alice": 1})  # the daemon's reused state
    assert memo.get(reused, sources) is not None
    changed = _state(ActualRole("carol", True, marker=Marker(RoleKind.USER, "3", "ldap")))
    assert memo.get(changed, sources) is None
    assert changed.fingerprint(frozenset(), sources, memo) != first
    assert WarmState().fingerprints is not WarmState().fingerprints


def test_no_core_value_carries_a_cache() -> None:
    """Frozen core values hold data only: no private (cache) field."""
    found = []
    for path in sorted(CORE.glob("*.py")):
        module = importlib.import_module(f"provisioner.core.{path.stem}")
        for name, obj in vars(module).items():
            frozen = dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen  # type: ignore[union-attr]
            if isinstance(obj, type) and frozen and obj.__module__ == module.__name__:
                found += [f"{name}.{f.name}" for f in dataclasses.fields(obj) if f.name.startswith("_")]
    assert found == []


def test_a_new_mapping_of_the_same_roles_encodes_only_the_roles_that_changed(monkeypatch: Any) -> None:
    """An incremental inspect returns a new roles mapping whose unchanged roles are the very
    same objects: the memo encodes only the changed roles' rows, and the digest is the one
    computed without it."""
    from provisioner.core.values import model

    memo = FingerprintMemo()
    first = _state()
    scope = frozenset({"dba_made"})
    first.fingerprint(scope, None, memo)

    encoded: list[str] = []
    original = model.row_digest

    def counting(role: ActualRole) -> bytes:
        encoded.append(role.name)
        return original(role)

    monkeypatch.setattr(model, "row_digest", counting)
    moved = dataclasses.replace(first.roles["alice"], login=False)
    second = ActualState("pg", {**first.roles, "alice": moved}, "provisioner")
    assert second.roles is not first.roles
    with_memo = second.fingerprint(scope, None, memo)
    assert encoded.count("alice") == 1 and "bob" not in encoded and "traders" not in encoded
    encoded.clear()
    assert with_memo == second.fingerprint(scope, None)
    assert with_memo != first.fingerprint(scope, None)
