"""Grouping membership changes into multi-member statements (no server: the SQL text)."""

from __future__ import annotations

import pytest

from provisioner.core.values.model import Reason
from provisioner.core.values.plan import ChangeKind, make_change
from provisioner.targets.pg_apply import Step, compose
from provisioner.targets.pg_bulk import bulk_batches, by_group, merged_statements

WHY = (Reason("r", "t"),)


def _grant(member: str, group: str) -> Step:
    return compose(make_change(ChangeKind.GRANT_MEMBERSHIP, member, WHY, group=group))


def _create(role: str) -> Step:
    marker = {"kind": "user", "id": role, "source": "s"}
    return compose(make_change(ChangeKind.CREATE_ROLE, role, WHY, role_kind="user", login=True, marker=marker))


def _text(batch: list[Step]) -> list[str]:
    return [s.as_string(None) for s in merged_statements(batch)]


def test_grants_merge_per_group_after_the_roles_they_need() -> None:
    steps = [_create("a"), _create("b"), _grant("a", "readers"), _grant("a", "x"), _grant("b", "readers")]
    [batch] = list(bulk_batches(by_group(steps), 500))
    assert _text(list(batch)) == [
        'CREATE ROLE "a" WITH LOGIN',
        'COMMENT ON ROLE "a" IS \'provisioner:managed {"id":"a","kind":"user","source":"s"}\'',
        'CREATE ROLE "b" WITH LOGIN',
        'COMMENT ON ROLE "b" IS \'provisioner:managed {"id":"b","kind":"user","source":"s"}\'',
        'GRANT "readers" TO "a", "b"',
        'GRANT "x" TO "a"',
    ]


def test_hostile_names_stay_quoted_in_merged_statements() -> None:
    [batch] = list(bulk_batches([_grant('x"; DROP ROLE postgres; --', "g"), _grant("y", "g")], 500))
    assert _text(list(batch)) == ['GRANT "g" TO "x""; DROP ROLE postgres; --", "y"']


def test_members_per_round_trip_are_bounded_and_groups_stay_together() -> None:
    # 40 people in the same 25 groups, in plan order (by member)
    steps = [_grant(f"u{i:02d}", f"g{j:02d}") for i in range(40) for j in range(25)]
    batches = [list(b) for b in bulk_batches(by_group(steps), 500, max_members=100)]
    assert sum(len(b) for b in batches) == 1000 and all(len(b) <= 100 for b in batches)
    statements = sum(len(merged_statements(b)) for b in batches)
    assert statements <= 35  # ~one per group and round trip; by member order it would be 250
    unsorted = sum(len(merged_statements(list(b))) for b in bulk_batches(steps, 500, max_members=100))
    assert unsorted == 250


def test_revokes_granted_by_someone_else_do_not_merge() -> None:
    change = make_change(ChangeKind.REVOKE_MEMBERSHIP, "a", WHY, group="g")
    step = compose(change, {("a", "g"): ("dba",)})
    assert step.merge is None
    plain = compose(make_change(ChangeKind.REVOKE_MEMBERSHIP, "b", WHY, group="g"))
    assert plain.merge == ("REVOKE", "g")


def _ledgered(member: str, group: str, granted: list[str], verb: ChangeKind = ChangeKind.GRANT_MEMBERSHIP) -> Step:
    marker = {"kind": "user", "id": member, "source": "s", "granted": granted}
    return compose(make_change(verb, member, WHY, group=group, marker=marker))


def _ledger_text(member: str, granted: list[str]) -> str:
    body = ",".join(f'"{g}"' for g in sorted(granted))
    return f'COMMENT ON ROLE "{member}" IS \'provisioner:managed {{"granted":[{body}],"id":"{member}","kind":"user","source":"s"}}\''


def test_one_ledger_statement_per_member_and_round_trip_the_last_one() -> None:
    steps = [
        _create("a"),
        _create("b"),
        _ledgered("a", "readers", ["readers"]),
        _ledgered("a", "x", ["readers", "x"]),
        _ledgered("b", "readers", ["readers"]),
    ]
    [batch] = list(bulk_batches(by_group(steps), 500))
    text = _text(list(batch))
    assert text[:4] == [
        'CREATE ROLE "a" WITH LOGIN',
        'COMMENT ON ROLE "a" IS \'provisioner:managed {"id":"a","kind":"user","source":"s"}\'',
        'CREATE ROLE "b" WITH LOGIN',
        'COMMENT ON ROLE "b" IS \'provisioner:managed {"id":"b","kind":"user","source":"s"}\'',
    ]
    assert sorted(text[4:]) == sorted([
        _ledger_text("a", ["readers", "x"]),
        _ledger_text("b", ["readers"]),
        'GRANT "readers" TO "a", "b"',
        'GRANT "x" TO "a"',
    ])
    # the member's fullest ledger is its last statement about it
    assert [t for t in text if t.startswith('COMMENT ON ROLE "a"')][-1] == _ledger_text("a", ["readers", "x"])


def test_a_step_of_another_kind_between_keeps_both_ledgers() -> None:
    alter = compose(make_change(ChangeKind.ALTER_ROLE, "a", WHY, login=True))
    steps = [_ledgered("a", "g", ["g"]), alter, _ledgered("a", "h", ["g", "h"])]
    text = _text(steps)
    assert text == [
        'GRANT "g" TO "a"',
        _ledger_text("a", ["g"]),
        'ALTER ROLE "a" WITH LOGIN',
        'GRANT "h" TO "a"',
        _ledger_text("a", ["g", "h"]),
    ]


def test_member_order_keeps_each_members_steps_in_plan_order() -> None:
    steps = [_ledgered(f"u{i}", g, []) for i in range(30) for g in ("readers", f"g{i % 4}", "z")]
    ordered = by_group(steps)
    assert sorted(map(id, ordered)) == sorted(map(id, steps))
    for i in range(30):
        mine = [s for s in ordered if s.change.role == f"u{i}"]
        assert [s.merge for s in mine] == [s.merge for s in steps if s.change.role == f"u{i}"]
        first = ordered.index(mine[0])
        assert ordered[first : first + 3] == mine, "one member's steps stay together"


def test_batch_cost_is_exactly_the_statements_sent() -> None:
    """bulk_batches' count of a round trip's statements is what merged_statements sends
    (so ``size`` bounds the round trip), on a random mix of steps."""
    import random

    rng = random.Random(7)
    kinds = [ChangeKind.GRANT_MEMBERSHIP, ChangeKind.REVOKE_MEMBERSHIP]
    for trial in range(40):
        steps: list[Step] = []
        for _ in range(rng.randint(1, 300)):
            member, group = f"u{rng.randint(0, 25)}", f"g{rng.randint(0, 12)}"
            roll = rng.random()
            if roll < 0.1:
                steps.append(compose(make_change(ChangeKind.ALTER_ROLE, member, WHY, login=False)))
            elif roll < 0.15:
                steps.append(_create(f"{member}x{trial}"))
            elif roll < 0.3:
                steps.append(compose(make_change(rng.choice(kinds), member, WHY, group=group)))
            else:
                steps.append(_ledgered(member, group, [group], rng.choice(kinds)))
        size = rng.choice([1, 3, 10, 50, 500])
        batches = [list(b) for b in bulk_batches(by_group(steps), size, max_members=rng.choice([2, 40, 5000]))]
        assert sum(len(b) for b in batches) == len(steps)
        for b in batches:
            sent = len(merged_statements(b))
            assert sent <= size or len(b) == 1, (trial, size, sent, len(b))


def test_a_malformed_ledger_is_refused_when_composed_though_composed_lazily() -> None:
    """The ledger statement is composed only when sent, but a malformed marker still makes
    the change fail to compose (refused alone, as before), never a GRANT without its ledger."""
    from provisioner.targets.base import ChangeFailed

    for bad in ({"kind": "nobody"}, {"kind": "user", "granted": "g"}, ["not", "an", "object"]):
        change = make_change(ChangeKind.GRANT_MEMBERSHIP, "a", WHY, group="g", marker=bad)
        try:
            compose(change)
        except ChangeFailed:
            continue
        raise AssertionError(f"composed a grant with marker {bad!r}")


def test_superseded_ledgers_are_never_composed(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.targets import pg_step

    steps = [_ledgered("a", g, ["g1", "g2", "g3"][: i + 1]) for i, g in enumerate(["g1", "g2", "g3"])]
    composed: list[str] = []
    original = pg_step.Step.ledger_statement

    def counting(step: pg_step.Step) -> pg_step.Statement:
        composed.append(step.change.role)
        return original(step)

    monkeypatch.setattr(pg_step.Step, "ledger_statement", counting)
    assert len(_text(steps)) == 4  # three GRANTs and the last ledger
    assert composed == ["a"]
