"""The PostgreSQL inspect's rows streamed in chunks (libpq 17+ chunked rows mode) or buffered
(an older libpq): against a real server both read the same catalog, whole, by name, and
incrementally; the large reads go through the stream when it is there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import ActualState, Marker, RoleKind
from provisioner.targets import pg_inspect
from provisioner.targets import postgres as pg_target_module
from provisioner.targets.base import RoleRows
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg


def _run(statement: str, *names: str, comment: str | None = None) -> None:
    parts = [sql.Identifier(n) for n in names]
    with pg.admin_connect() as conn:
        if comment is None:
            conn.execute(sql.SQL(statement).format(*parts))
        else:
            conn.execute(sql.SQL(statement).format(*parts, sql.Literal(comment)))


def _mine(state: ActualState, p: str) -> dict[str, Any]:
    return {name: role for name, role in state.roles.items() if name.startswith(p)}


def _catalog(p: str) -> list[str]:
    """Eleven roles: two groups, nine logins with markers, memberships and a hand comment."""
    groups = [f"{p}grp{i}" for i in range(2)]
    users = [f"{p}user{i}" for i in range(9)]
    for g in groups:
        _run("CREATE ROLE {} NOLOGIN", g)
        _run("COMMENT ON ROLE {} IS {}", g, comment=marker_codec.encode(Marker(RoleKind.GROUP)))
    for i, u in enumerate(users):
        _run("CREATE ROLE {} LOGIN", u)
        _run("GRANT {} TO {}", groups[i % 2], u)
        if i % 3 == 0:
            _run("GRANT {} TO {}", groups[(i + 1) % 2], u)
        note = "hand note" if i == 4 else marker_codec.encode(Marker(RoleKind.USER, f"sid-{i}", "ldap", "inst"))
        _run("COMMENT ON ROLE {} IS {}", u, comment=note)
    return users


def _streams(monkeypatch: pytest.MonkeyPatch, named: list[list[str]] | None = None) -> list[str]:
    """The queries sent through ``Cursor.stream`` (and, into ``named``, the names each
    ``ROLES_NAMED_QUERY`` asked for)."""
    sent: list[str] = []
    original = psycopg.Cursor.stream

    def spy(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kw: Any) -> Iterator[Any]:
        sent.append(str(query))
        if named is not None and query == pg_inspect.ROLES_NAMED_QUERY:
            named.append(list(params[0]))
        return original(self, query, params, **kw)

    monkeypatch.setattr(psycopg.Cursor, "stream", spy)
    return sent


def _reads(target: PostgresTarget, p: str, users: list[str]) -> list[Any]:
    """Whole, by name, incrementally (everything new to an empty ``kept``), and the digest."""
    kept: RoleRows = {}
    whole = _mine(target.inspect(), p)
    named = _mine(target.inspect(frozenset(users[:4])), p)
    first = _mine(target.inspect(reuse=kept), p)
    digest, _ = target.inspect_if_moved(None, {})
    return [whole, named, first, digest, kept]


def test_streamed_and_buffered_rows_read_the_same_catalog(
    pg_target: PostgresTarget, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = role_prefix
    users = _catalog(p)
    monkeypatch.setattr(pg_target_module, "_CHUNK", 3)  # several chunks per result
    sent = _streams(monkeypatch)
    streamed = _reads(pg_target, p, users)
    assert psycopg.capabilities.has_stream_chunked()  # this machine's libpq: the stream is used
    assert pg_inspect.ROLES_QUERY in sent and pg_inspect.MEMBERSHIPS_QUERY in sent
    assert pg_inspect.ROLES_NAMED_QUERY in sent and pg_inspect.ROLE_HASHES_QUERY in sent

    sent.clear()
    monkeypatch.setattr(psycopg.capabilities, "has_stream_chunked", lambda check=False: False)
    buffered = _reads(pg_target, p, users)
    assert sent == []  # an older libpq: every result buffered, converted a chunk at a time
    assert streamed[:4] == buffered[:4]
    assert {n: r for n, (_, r) in streamed[4].items() if n.startswith(p)} == {
        n: r for n, (_, r) in buffered[4].items() if n.startswith(p)
    }
    whole = streamed[0]
    assert len(whole) == 11
    assert whole[f"{p}user0"].member_of == frozenset({f"{p}grp0", f"{p}grp1"})
    assert whole[f"{p}user0"].marker == Marker(RoleKind.USER, "sid-0", "ldap", "inst")
    assert whole[f"{p}user4"].marker is None  # a hand comment is no marker
    assert set(streamed[1]) == set(users[:4])


def test_an_incremental_read_after_a_change_streams_only_what_changed(
    pg_target: PostgresTarget, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = role_prefix
    users = _catalog(p)
    kept: RoleRows = {}
    pg_target.inspect(reuse=kept)
    _run("REVOKE {} FROM {}", f"{p}grp1", users[0])
    monkeypatch.setattr(pg_target_module, "_CHUNK", 2)
    named: list[list[str]] = []
    sent = _streams(monkeypatch, named)
    after = _mine(pg_target.inspect(reuse=kept), p)
    assert named == [[users[0]]]  # the one role whose key moved, read by name
    assert after == _mine(pg_target.inspect(), p)
    assert after[users[0]].member_of == frozenset({f"{p}grp0"})
    assert pg_inspect.ROLE_HASHES_QUERY in sent
    assert pg_inspect.ROLES_QUERY in sent  # the second, whole inspect
