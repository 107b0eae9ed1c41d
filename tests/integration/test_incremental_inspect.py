"""The warm daemon's incremental inspect against a real PostgreSQL (issue 19): with the
roles the last inspect kept, only roles whose server-side hash changed are read again;
the result always equals a full inspect, and an unchanged role is the very same object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.core.values.model import ActualState
from provisioner.targets import pg_inspect
from provisioner.targets.base import RoleRows
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg


def _run(statement: str, *names: str) -> None:
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL(statement).format(*(sql.Identifier(n) for n in names)))


def _mine(state: ActualState, p: str) -> dict[str, Any]:
    return {name: role for name, role in state.roles.items() if name.startswith(p)}


def _named_reads(target: PostgresTarget, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The role names each ROLES_NAMED_QUERY of ``target`` asked for."""
    asked: list[list[str]] = []
    original = PostgresTarget._rows

    def spy(self: PostgresTarget, conn: psycopg.Connection[Any], query: str, params: Any = None) -> Iterator[Any]:
        if query == pg_inspect.ROLES_NAMED_QUERY:
            asked.append(list(params[0]))
        return original(self, conn, query, params)

    monkeypatch.setattr(PostgresTarget, "_rows", spy)
    return asked


def test_only_changed_roles_are_read_again_and_the_result_equals_a_full_inspect(
    pg_target: PostgresTarget, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = role_prefix
    names = {k: f"{p}{k}" for k in ("a", "b", "c", "d", "e", "grp", "grp2", "same")}
    for key in ("grp", "grp2"):
        _run("CREATE ROLE {} NOLOGIN", names[key])
    for key in ("a", "b", "c", "d", "e", "same"):
        _run("CREATE ROLE {} LOGIN", names[key])
        _run("GRANT {} TO {}", names["grp"], names[key])
    _run("COMMENT ON ROLE {} IS 'hand note'", names["b"])
    kept: RoleRows = {}
    first = pg_target.inspect(reuse=kept)
    assert _mine(first, p) == _mine(pg_target.inspect(), p)

    asked = _named_reads(pg_target, monkeypatch)
    _run("GRANT {} TO {}", names["grp2"], names["a"])  # a hand grant
    _run("COMMENT ON ROLE {} IS NULL", names["b"])  # a comment removed
    _run("ALTER ROLE {} VALID UNTIL '2031-01-01'", names["c"])
    _run("ALTER ROLE {} RENAME TO {}", names["d"], f"{p}d2")
    _run("DROP ROLE {}", names["e"])
    _run("CREATE ROLE {} NOLOGIN", f"{p}new")
    _run("ALTER ROLE {} RENAME TO {}", names["grp2"], f"{p}grp3")  # a's memberships read differently
    second = pg_target.inspect(reuse=kept)

    full = pg_target.inspect()
    assert _mine(second, p) == _mine(full, p)
    assert list(second.roles) == list(full.roles), "every role, in a full read's order (by name)"
    assert second.roles[names["a"]].member_of == {names["grp"], f"{p}grp3"}
    assert second.roles[names["b"]].marker is None and second.roles[names["c"]].valid_until is not None
    assert names["e"] not in second.roles and names["d"] not in second.roles
    assert second.roles[names["same"]] is first.roles[names["same"]], "an unchanged role is the same object"
    assert second.roles[names["grp"]] is first.roles[names["grp"]]
    (read,) = [r for r in asked if r]  # one incremental read, naming only what changed
    assert {n for n in read if n.startswith(p)} == {names["a"], names["b"], names["c"], f"{p}d2", f"{p}new", f"{p}grp3"}


def test_a_read_back_of_named_roles_refreshes_what_is_kept(
    pg_target: PostgresTarget, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify's read-back after an apply keeps what it read: the next full inspect reads none
    of those roles again, yet still sees a change made after the read-back."""
    p = role_prefix
    a, b, gone = f"{p}a", f"{p}b", f"{p}gone"
    for name in (a, b, gone):
        _run("CREATE ROLE {} LOGIN", name)
    kept: RoleRows = {}
    pg_target.inspect(reuse=kept)
    _run("COMMENT ON ROLE {} IS 'applied'", a)
    _run("COMMENT ON ROLE {} IS 'applied'", b)
    _run("DROP ROLE {}", gone)
    back = pg_target.inspect(frozenset({a, b, gone}), kept)
    assert kept[a][1] is back.roles[a] and gone not in kept
    _run("COMMENT ON ROLE {} IS 'changed after the read-back'", b)

    asked = _named_reads(pg_target, monkeypatch)
    after = pg_target.inspect(reuse=kept)
    assert after.roles[a] is back.roles[a]
    assert [n for r in asked for n in r if n.startswith(p)] == [b]
    assert _mine(after, p) == _mine(pg_target.inspect(), p)


def test_the_whole_catalog_and_the_by_name_hashes_agree(pg_target: PostgresTarget, role_prefix: str) -> None:
    """The two key queries aggregate memberships differently (one aggregate over the catalog,
    one per named role); they must key every role alike, or a read-back would make the next
    inspect read its roles again."""
    p = role_prefix
    groups = [f"{p}Grp b", f'{p}grp,"a"', f"{p}grp_c", f"{p}ZZ"]
    people = [f"{p}ann", f"{p}Bob Smith", f"{p}carl"]
    for name in groups:
        _run("CREATE ROLE {} NOLOGIN", name)
    for name in people:
        _run("CREATE ROLE {} LOGIN", name)
    for person, held in zip(people, (groups, groups[:2], groups[3:]), strict=True):
        for group in reversed(held):
            _run("GRANT {} TO {}", group, person)
    _run("COMMENT ON ROLE {} IS 'a note, with | and ''quotes'''", people[0])
    _run("GRANT {} TO {} WITH ADMIN OPTION", groups[3], people[2])
    names = sorted([*groups, *people])
    with pg.admin_connect() as conn:
        whole = dict(r for r in pg_inspect.role_keys(lambda q, p: conn.execute(q, p)) if r[0] in names)
        named = {n: bytes(h) for n, h in conn.execute(pg_inspect.ROLE_HASHES_NAMED_QUERY, (names,))}
    assert set(whole) == set(names) and whole == named


def test_members_of_a_renamed_or_replaced_group_are_read_again(
    pg_target: PostgresTarget, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memberships are keyed by the group's oid: renaming a group, or giving its name to another
    role, leaves the members' own keys unchanged while the names of their groups changed."""
    p = role_prefix
    g1, g2, g3, m1, m2, m3, bystander = (f"{p}{k}" for k in ("g1", "g2", "g3", "m1", "m2", "m3", "by"))
    for name in (g1, g2, g3):
        _run("CREATE ROLE {} NOLOGIN", name)
    for member, group in ((m1, g1), (m2, g2), (m3, g3)):
        _run("CREATE ROLE {} LOGIN", member)
        _run("GRANT {} TO {}", group, member)
    _run("CREATE ROLE {} LOGIN", bystander)
    kept: RoleRows = {}
    first = pg_target.inspect(reuse=kept)

    asked = _named_reads(pg_target, monkeypatch)
    _run("ALTER ROLE {} RENAME TO {}", g1, f"{p}g1new")  # renamed
    _run("ALTER ROLE {} RENAME TO {}", g2, f"{p}g2old")  # renamed, and its name given to a new role
    _run("CREATE ROLE {} NOLOGIN", g2)
    _run("ALTER ROLE {} RENAME TO {}", g3, f"{p}tmp")  # g3 and the bystander swap names
    _run("ALTER ROLE {} RENAME TO {}", bystander, g3)
    _run("ALTER ROLE {} RENAME TO {}", f"{p}tmp", bystander)
    second = pg_target.inspect(reuse=kept)

    assert _mine(second, p) == _mine(pg_target.inspect(), p)
    assert second.roles[m1].member_of == {f"{p}g1new"} and second.roles[m2].member_of == {f"{p}g2old"}
    assert second.roles[m3].member_of == {bystander}
    (read,) = [r for r in asked if r]
    assert {m1, m2, m3} <= set(read), "the members were read again although their own rows did not change"
    assert first.roles[m1] is not second.roles[m1]

    # verify's read-back of a renamed group (an apply's own rename) drops its members from what is
    # kept, so the next inspect reads them again
    _run("ALTER ROLE {} RENAME TO {}", f"{p}g1new", f"{p}g1last")
    pg_target.inspect(frozenset({f"{p}g1new", f"{p}g1last"}), kept)
    assert m1 not in kept
    third = pg_target.inspect(reuse=kept)
    assert third.roles[m1].member_of == {f"{p}g1last"} and _mine(third, p) == _mine(pg_target.inspect(), p)
