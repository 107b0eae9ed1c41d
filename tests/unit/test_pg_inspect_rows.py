"""pg_inspect builds roles from rows as they are read (issue 19, peak memory): any iterable
will do, each group's name is one string object however many members it has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from provisioner.targets import pg_inspect


def _rows(*rows: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    yield from rows  # a one-pass iterator, as the target's cursor gives


def test_roles_are_built_from_one_pass_iterators_and_share_group_names() -> None:
    role = (16384, "ann", True, False, False, False, False, False, None, None)
    other = (16385, "bob", True, False, False, False, False, False, None, None)
    group = (16386, "traders", False, False, False, False, False, False, None, None)
    first, second = "".join(["trad", "ers"]), "".join(["tra", "ders"])  # equal, distinct objects
    assert first is not second
    # memberships by the member's oid; a membership granted by two grantors (PostgreSQL 16) comes twice
    roles = pg_inspect.build_roles(_rows(role, other, group), _rows((16384, first), (16385, second), (16384, second)))
    assert set(roles) == {"ann", "bob", "traders"}
    (ann_group,), (bob_group,) = roles["ann"].member_of, roles["bob"].member_of
    assert ann_group == "traders" and ann_group is bob_group
    assert roles["traders"].member_of == frozenset()
