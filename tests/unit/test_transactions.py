"""Splitting a large plan into transactions: pure, checked on the in-memory catalog."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.values.plan import ChangeKind, transactions
from tests.unit.test_diff import apply_changes, directories, plan_for, start_states


@settings(max_examples=200, deadline=None)
@given(directories(), start_states(), st.integers(1, 6))
def test_split_plan_applies_like_one_transaction(people, start, limit) -> None:  # type: ignore[no-untyped-def]
    changes, _ = plan_for(people, start)
    chunks = transactions(changes, limit)
    assert sorted(map(repr, (c for ch in chunks for c in ch))) == sorted(map(repr, changes))
    state = start
    for chunk in chunks:  # a grant of a group that does not exist yet would be refused
        state = apply_changes(state, chunk)
    assert state == apply_changes(start, changes)
    owner: dict[str, int] = {}
    for i, chunk in enumerate(chunks):
        for c in chunk:
            if c.kind is ChangeKind.CREATE_ROLE and c.param("role_kind") == "group":
                continue
            assert owner.setdefault(c.role, i) == i, f"changes of {c.role} split across transactions"
        roles = {c.role for c in chunk}
        assert len(chunk) <= limit or len(roles) == 1


def test_small_plan_is_one_transaction() -> None:
    from tests.unit.test_diff import empty_state, person

    changes, _ = plan_for([person("a", "Trading"), person("b", "Operations")], empty_state())
    assert transactions(changes, 5000) == [changes]
    assert transactions(changes, 0) == [changes]
    assert transactions((), 10) == []
