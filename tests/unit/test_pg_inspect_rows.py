"""pg_inspect builds roles from rows as they are read (issue 19, peak memory): any iterable
will do, each group's name is one string object however many members it has."""

from __future__ import annotations

import json
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


def _marker(stable_id: str, granted: list[str]) -> str:
    data = {"granted": granted, "id": stable_id, "instance": "inst-1", "kind": "user", "source": "hr"}
    return "provisioner:managed " + json.dumps(data)  # each role's comment decodes to strings of its own


def test_equal_sets_ledgers_and_marker_names_are_one_object() -> None:
    """A warm daemon keeps every role of the cluster between runs: equal membership sets,
    ledgers and marker names are one object each (50k users, two installations: warm peak
    706 -> 592 MiB with the source's shared values, docs/performance.md)."""
    rows = [
        (16384 + i, name, True, False, False, False, False, False, None, _marker(f"id-{i}", ["desk", "readers"]))
        for i, name in enumerate(("ann", "bob", "cat"))
    ]
    rows.append((16390, "dan", True, False, False, False, False, False, None, _marker("id-9", ["readers"])))
    members = [(oid, "".join(["des", "k"])) for oid in (16384, 16385, 16386)]
    members += [(oid, "".join(["read", "ers"])) for oid in (16384, 16385, 16386, 16390)]
    roles = pg_inspect.build_roles(_rows(*rows), _rows(*members))
    ann, bob, cat, dan = (roles[n] for n in ("ann", "bob", "cat", "dan"))
    assert ann.member_of == frozenset({"desk", "readers"}) and ann.member_of is bob.member_of is cat.member_of
    assert ann.marker is not None and bob.marker is not None and dan.marker is not None
    assert ann.marker.granted == ann.member_of and ann.marker.granted is ann.member_of is bob.marker.granted
    assert dan.marker.granted is dan.member_of and dan.member_of == frozenset({"readers"})
    assert next(iter(dan.marker.granted)) is next(iter(dan.member_of))
    assert ann.marker.source == "hr" and ann.marker.source is dan.marker.source
    assert ann.marker.instance == "inst-1" and ann.marker.instance is dan.marker.instance
    assert ann.marker.stable_id == "id-0" and dan.marker.stable_id == "id-9"


def test_kept_roles_are_keyed_by_their_own_name_string() -> None:
    """Memory (issue 19): the key query returns each name again; the warm daemon keeps every role
    of the cluster, so its tables are keyed by the role's own string (one per role, not two)."""
    from provisioner.core.values.model import ActualRole

    def fresh_text(text: str) -> str:  # an equal string that is another object, as a row gives
        return "".join(list(text))

    old, new = ActualRole(fresh_text("alice"), True), ActualRole(fresh_text("bob"), True)
    kept: dict[str, tuple[bytes, ActualRole]] = {fresh_text("alice"): (b"k1" * 8, old)}
    hashes = [(fresh_text("alice"), b"k1" * 8), (fresh_text("bob"), b"k2" * 8)]
    out = pg_inspect.merge_roles(hashes, {"bob": new}, kept)
    assert out == {"alice": old, "bob": new} and list(kept) == ["alice", "bob"]
    assert all(key is role.name for key, role in out.items())
    assert all(key is role.name for key, (_, role) in kept.items())
    later = ActualRole(fresh_text("bob"), False)
    pg_inspect.refresh_kept([(fresh_text("bob"), b"k3" * 8)], {"bob": later}, ["bob"], kept)
    assert kept["bob"] == (b"k3" * 8, later) and next(k for k in kept if k == "bob") is later.name
