"""Grouping membership changes into multi-member statements (no server: the SQL text)."""

from __future__ import annotations

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
