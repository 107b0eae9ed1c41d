"""verify reads the marker a change wrote from the change's own parameter (no JSON round trip)
and compares it with the role's re-read comment: owner, installation and ledger."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.core.reconcile.verify import verify
from provisioner.core.values.marker import encode, parse
from provisioner.core.values.model import ActualRole, ActualState, Marker, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, make_change

WHY = (Reason("people", "department='trading'"),)
WROTE = Marker(RoleKind.USER, "e-1", "hr", "desk-a", frozenset({"readers", "dept_trading"}))


def _after(marker: Marker | None, member_of: frozenset[str] = frozenset({"readers", "dept_trading"})) -> ActualState:
    role = ActualRole("ann", login=True, marker=marker, member_of=member_of)
    return ActualState("pg", {"ann": role}, "provisioner")


def _create(marker: dict[str, Any]) -> list[Change]:
    return [make_change(ChangeKind.CREATE_ROLE, "ann", WHY, login=True, role_kind="user", marker=marker)]


def test_the_marker_read_back_as_written_verifies() -> None:
    read_back = parse(encode(WROTE))  # the comment as the catalog returns it
    assert verify(_create(WROTE.to_json()), _after(read_back)) == []


@pytest.mark.parametrize(
    ("actual", "problem"),
    [
        (None, "marker missing after apply"),
        (Marker(RoleKind.USER, "e-2", "hr", "desk-a", WROTE.granted), "marker is"),
        (Marker(RoleKind.USER, "e-1", "hr", "desk-b", WROTE.granted), "marker names installation 'desk-b'"),
        (Marker(RoleKind.USER, "e-1", "hr", "desk-a", frozenset({"readers"})), "membership ledger is ['readers']"),
    ],
)
def test_a_different_marker_is_reported(actual: Marker | None, problem: str) -> None:
    (found,) = verify(_create(WROTE.to_json()), _after(actual))
    assert problem in found and "create role ann" in found


@pytest.mark.parametrize("bad", [{"kind": "robot", "id": "e-1"}, {"id": "e-1"}, {**WROTE.to_json(), "granted": "readers"}])
def test_a_malformed_expected_marker_is_reported(bad: dict[str, Any]) -> None:
    # the change's own check and the ledger's both name it
    assert verify(_create(bad), _after(WROTE)) == [
        "create role ann (user, LOGIN): marker missing after apply",
        "create role ann (user, LOGIN): unreadable expected marker",
    ]
