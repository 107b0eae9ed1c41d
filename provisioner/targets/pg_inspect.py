"""Catalog reading for the PostgreSQL target.

Everything is read in a constant number of queries (session facts, roles with
their comments, memberships), whatever the number of roles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import ActualRole

BOOTSTRAP_SUPERUSER_OID = 10

Query = Callable[[str, Any], Iterable[Any]]
"""Run one catalog query (text, parameters) in the inspect's snapshot; its rows, which may be
produced one at a time while they are read (a whole catalog's rows are never a list at once)."""

SESSION_QUERY = "SELECT current_user::text, current_setting('server_version')"

# Open sessions per login role (leavers' sessions are terminated, break-glass
# use is reported); other sessions of the provisioner itself are not counted.
SESSIONS_QUERY = """
SELECT usename::text, count(*)::int
  FROM pg_catalog.pg_stat_activity
 WHERE usename IS NOT NULL
   AND coalesce(backend_type, 'client backend') = 'client backend'  -- NULL: another user's session
   AND pid <> pg_catalog.pg_backend_pid()
 GROUP BY 1
"""

# valid_until: infinity (and anything past year 9999, which Python cannot
# represent) reads as NULL = "never expires"; -infinity and BC dates are
# clamped to the smallest representable instant (= "always expired").
_ROLES = """
SELECT r.oid::bigint,
       r.rolname::text,
       r.rolcanlogin,
       r.rolsuper,
       r.rolreplication,
       r.rolbypassrls,
       r.rolcreaterole,
       r.rolcreatedb,
       CASE
         WHEN r.rolvaliduntil IS NULL
           OR r.rolvaliduntil >= '10000-01-01 00:00:00+00'::timestamptz THEN NULL
         WHEN r.rolvaliduntil < '0001-01-02 00:00:00+00'::timestamptz
           THEN '0001-01-02 00:00:00+00'::timestamptz
         ELSE r.rolvaliduntil
       END,
       shobj_description(r.oid, 'pg_authid')
  FROM pg_catalog.pg_roles r
"""
ROLES_QUERY = _ROLES + " ORDER BY r.rolname"

# Per membership the member's oid and the group's name: the roles' rows carry their oids, so
# the member's name needs no second join, and no DISTINCT (PostgreSQL 16 keeps one row per
# grantor): group_memberships collects each member's groups as a set.  At 450,000 memberships
# 0.42 s instead of 0.94 s with member names and DISTINCT.
_MEMBERSHIPS = """
SELECT am.member::bigint, g.rolname::text
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
"""
MEMBERSHIPS_QUERY = _MEMBERSHIPS

# The same, for the named roles only (%s: their names): what verify re-reads after
# an apply, so that it costs what the plan touched, not the size of the catalog.  The members
# come from the list joined by name (the planner sees its length): with "m.rolname = ANY(%s)"
# as a filter, PostgreSQL 15 chose a merge join that compared every membership's member with
# the whole list -- 5.8 s for 5,000 names on a cluster of 150,000 roles, 0.13 s this way.
ROLES_NAMED_QUERY = _ROLES + " WHERE r.rolname = ANY(%s::text[]) ORDER BY r.rolname"
MEMBERSHIPS_NAMED_QUERY = """
SELECT am.member::bigint, g.rolname::text
  FROM unnest(%s::text[]) AS want(name)
  JOIN pg_catalog.pg_roles m ON m.rolname = want.name
  JOIN pg_catalog.pg_auth_members am ON am.member = m.oid
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
"""

# The daemon's catalog digest and the warm daemon's incremental inspect read the catalog the
# same way, hashing as little text as they can:
#   * per role, two seeded 64-bit hashes (``hashtextextended``, PostgreSQL 11+) of its oid,
#     name, attributes, inheritance, connection limit and expiry -- short text of fixed fields
#     -- and the transaction id (xmin) of its comment's row: a comment set, changed or removed
#     is a new row version, so the long marker comments are never hashed;
#   * per membership, its member oid, group oid and admin option as two seeded 64-bit hashes
#     (``hashint8extended``, 48 bits of each kept so that sums fit a bigint), summed per member
#     with their count: a GRANT or REVOKE changes its member's count or sums.
# A role's key is its oid, those two hashes, its comment's xmin and its memberships' count and
# sums (bytes).  The catalog digest is the role count and two sums of the roles' hashes (each
# combined with its comment's xmin), then the membership count and its two sums
# (CATALOG_DIGEST_QUERY: one pass, ~0.45 s at 150,000 roles and 730,000 memberships, where hashing
# every role's whole row, comment included, took 0.6-1.1 s).  Any role created, dropped, renamed,
# altered or commented and any GRANT or REVOKE of a role changes it, on roles no plan touches
# too (a needless full run, never a missed one).
# What could be forged to keep a hash: the name is the only free text hashed, and a role renamed
# is a name gone (below); transaction ids and oids are the server's.  The digest stays a change
# detector: the full run at each UTC date change bounds what a forged collision could hide.
# Memberships are keyed by the group's oid, so a group renamed (or a name given to another
# role) leaves its members' keys as they were while their groups' names changed:
# changed_roles() reads those members again.
# Only roles whose key differs from the one the last inspect kept are read in full
# (ROLES_NAMED_QUERY, MEMBERSHIPS_NAMED_QUERY): an unchanged role is the very same object.
_ROLE_TEXT = """(SELECT concat_ws('|', r.oid, quote_nullable(r.rolname::text), r.rolcanlogin, r.rolsuper,
                   r.rolreplication, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolinherit,
                   r.rolconnlimit, r.rolvaliduntil) AS t OFFSET 0) x"""  # OFFSET 0: built once per role
_COMMENT_VERSION = "((r.oid::bigint << 32) | d.xmin::text::bigint)"


def _role_hash(seed: int) -> str:
    return f"(hashtextextended(x.t, {seed}) # coalesce(hashint8extended({_COMMENT_VERSION}, {seed + 100}), 0))"


def _edge_hash(seed: int) -> str:
    return (
        "(hashint8extended((e.member::bigint << 32) | e.roleid::bigint,"
        f" CASE WHEN e.admin_option THEN {seed + 10} ELSE {seed} END) >> 16)"
    )


_SUMS = "count(*) || ':' || coalesce(sum({0}) || '.' || sum({1}), '')"
_COMMENT = "pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass"
CATALOG_DIGEST_QUERY = f"""
SELECT (SELECT {_SUMS.format(_role_hash(1), _role_hash(2))}
          FROM pg_catalog.pg_roles r LEFT JOIN {_COMMENT} CROSS JOIN LATERAL {_ROLE_TEXT})
       || '/' ||
       (SELECT {_SUMS.format(_edge_hash(1), _edge_hash(2))} FROM pg_catalog.pg_auth_members e)
"""
_EDGE_SUMS = f"count(*) AS n, sum({_edge_hash(1)})::bigint AS s1, sum({_edge_hash(2)})::bigint AS s2"
_KEYED = """r.rolname::text,
       int8send(r.oid::bigint) || int8send(hashtextextended(x.t, 1)) || int8send(hashtextextended(x.t, 2))
         || int8send(coalesce(d.xmin::text::bigint, -1))
         || int8send(coalesce(e.n, 0)) || int8send(coalesce(e.s1, 0)) || int8send(coalesce(e.s2, 0))"""
ROLE_HASHES_QUERY = f"""
SELECT {_KEYED}
  FROM pg_catalog.pg_roles r
  LEFT JOIN {_COMMENT}
  CROSS JOIN LATERAL {_ROLE_TEXT}
  LEFT JOIN (SELECT e.member, {_EDGE_SUMS} FROM pg_catalog.pg_auth_members e GROUP BY e.member) e
    ON e.member = r.oid
 ORDER BY r.rolname
"""
# The same for the named roles only (%s: their names), each looked up by index -- its comment
# too, by the role's oid (a lateral lookup, OFFSET 0: not flattened into a join, so evaluated per
# role whatever the estimates): joined to pg_shdescription instead, statistics taken
# before a first sync's comments existed (one row estimated for all role comments) made the
# planner scan every role comment once per named role, 3.9 s for 1,300 names among 100,000 roles
# (the warm daemon's read-back after a 50k churn run, docs/performance.md session 9).
ROLE_HASHES_NAMED_QUERY = f"""
SELECT {_KEYED}
  FROM unnest(%s::text[]) AS want(name)
  JOIN pg_catalog.pg_roles r ON r.rolname = want.name
  LEFT JOIN LATERAL (SELECT d.xmin AS xmin FROM pg_catalog.pg_shdescription d
                      WHERE d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass OFFSET 0) d ON true
  CROSS JOIN LATERAL {_ROLE_TEXT}
  CROSS JOIN LATERAL (SELECT {_EDGE_SUMS} FROM pg_catalog.pg_auth_members e WHERE e.member = r.oid) e
"""

# Used by apply on PostgreSQL 16+, where one membership may be recorded once
# per grantor: every (member, group) pair to revoke, with every grantor.
GRANTORS_QUERY = """
SELECT m.rolname::text, g.rolname::text, gr.rolname::text
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles m ON m.oid = am.member
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
  JOIN pg_catalog.pg_roles gr ON gr.oid = am.grantor
  JOIN unnest(%s::text[], %s::text[]) AS want(member, grp)
    ON want.member = m.rolname AND want.grp = g.rolname
 ORDER BY 1, 2, 3
"""


def is_system_role(oid: int, name: str) -> bool:
    return oid == BOOTSTRAP_SUPERUSER_OID or name.startswith("pg_")


def to_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # timestamptz always carries a zone; be safe anyway
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def group_memberships(rows: Iterable[tuple[int, str]], shared: dict[Any, Any]) -> dict[int, frozenset[str]]:
    """Per member (by oid), the roles it is a member of. Each group's name is one string object
    however many members it has (100,000s of memberships name a few thousand groups), and equal
    sets are one object (``shared``: the inspect's table, see :meth:`Marker.from_json`)."""
    out: dict[int, set[str]] = {}
    for member, group in rows:
        out.setdefault(member, set()).add(shared.setdefault(group, group))
    result = {}
    for member, groups in out.items():
        frozen = frozenset(groups)
        result[member] = shared.setdefault(frozen, frozen)
    return result


def build_role(row: tuple[Any, ...], member_of: frozenset[str], shared: dict[Any, Any]) -> ActualRole:
    oid, name, login, superuser, replication, bypassrls, createrole, createdb, until, comment = row
    return ActualRole(
        name=name,
        login=bool(login),
        superuser=bool(superuser),
        replication=bool(replication),
        bypassrls=bool(bypassrls),
        createrole=bool(createrole),
        createdb=bool(createdb),
        valid_until=to_utc(until),
        marker=marker_codec.parse(comment, shared),
        member_of=member_of,
        system=is_system_role(int(oid), name),
    )


def build_roles(
    role_rows: Iterable[tuple[Any, ...]], membership_rows: Iterable[tuple[int, str]]
) -> dict[str, ActualRole]:
    """Roles from their rows (oid first) and the membership rows (member oid, group name).
    Equal names, membership sets and ledgers read here are one object each: a warm daemon
    keeps every role of the cluster between runs."""
    shared: dict[Any, Any] = {}
    memberships = group_memberships(membership_rows, shared)
    empty: frozenset[str] = frozenset()
    roles = (build_role(row, memberships.get(row[0], empty), shared) for row in role_rows)
    return {role.name: role for role in roles}


def changed_roles(hashes: Iterable[tuple[str, bytes]], kept: Mapping[str, tuple[bytes, ActualRole]]) -> list[str]:
    """The roles of ``hashes`` (name, hash) that ``kept`` (what the last inspect built) lacks or
    holds with another hash: the only ones an incremental inspect reads in full."""
    out = []
    current: dict[str, bytes] = {}
    for name, digest in hashes:
        current[name] = digest
        last = kept.get(name)
        if last is None or last[0] != digest:
            out.append(name)
    # names gone from the catalog or now another role's (renamed, dropped and re-created)
    moved = {name for name, (key, _) in kept.items() if _oid(current.get(name, b"")) != _oid(key)}
    return out + [n for n in _holding(kept, moved, out) if n in current]


def refresh_kept(
    hashes: Iterable[tuple[str, bytes]],
    fresh: Mapping[str, ActualRole],
    names: Iterable[str],
    kept: dict[str, tuple[bytes, ActualRole]],
) -> None:
    """After reading the named roles (``fresh``, with their ``hashes``, one snapshot), ``kept``
    holds them as read: a role named but not found is gone from it."""
    hashes = list(hashes)
    current = dict(hashes)
    names = list(names)
    moved = {name for name in names if name in kept and _oid(current.get(name, b"")) != _oid(kept[name][0])}
    for name in names:
        kept.pop(name, None)
    for name in _holding(kept, moved, ()):  # read in full at the next inspect
        del kept[name]
    for name, digest in hashes:
        role = fresh.get(name)
        if role is not None:
            kept[role.name] = (digest, role)  # the role's own name: one string per role kept


def merge_roles(
    hashes: Iterable[tuple[str, bytes]],
    fresh: Mapping[str, ActualRole],
    kept: dict[str, tuple[bytes, ActualRole]],
) -> dict[str, ActualRole]:
    """Every role of ``hashes``, in their order (:func:`role_keys`': by name, as a full read's): the
    one just read (``fresh``) or else the one ``kept``, the same object; ``kept`` becomes this
    inspect's (roles gone from the catalog are dropped)."""
    out: dict[str, ActualRole] = {}
    now: dict[str, tuple[bytes, ActualRole]] = {}
    for name, digest in hashes:
        role = fresh.get(name)
        if role is None:
            role = kept[name][1]
        key = role.name  # the role's own string, not the key row's: one string per role kept
        out[key] = role
        now[key] = (digest, role)
    kept.clear()
    kept.update(now)
    return out


@contextmanager
def hash_joins(query: Query) -> Iterator[None]:
    """The whole-catalog digest and keys planned without nested loops, in the caller's transaction.
    Statistics a concurrent ANALYZE took while a large first sync was still open count the roles
    created so far as absent (pg_authid: 14 rows on 1,980 pages holding 52,000 roles): the planner
    then joined every role with every comment in a nested loop, 64-66 s for either query where hash
    joins take 0.17-0.34 s (docs/performance.md, session 8).  The setting is restored afterwards:
    the reads of named roles use nested loops over indexes."""
    ((before,),) = list(query("SELECT pg_catalog.current_setting('enable_nestloop')", None))
    list(query("SELECT pg_catalog.set_config('enable_nestloop', 'off', true)", None))
    try:
        yield
    finally:
        list(query("SELECT pg_catalog.set_config('enable_nestloop', %s, true)", (str(before),)))


def catalog_digest(query: Query) -> str:
    """:data:`CATALOG_DIGEST_QUERY`, planned with :func:`hash_joins`."""
    with hash_joins(query):
        ((digest,),) = list(query(CATALOG_DIGEST_QUERY, None))
    return str(digest)


def role_keys(query: Query) -> list[tuple[str, bytes]]:
    """Every role's name and key (:data:`ROLE_HASHES_QUERY`: ``text`` and ``bytea``, by name),
    planned with :func:`hash_joins`."""
    with hash_joins(query):
        return list(query(ROLE_HASHES_QUERY, None))


def _oid(key: bytes) -> bytes:
    return key[:8]


def _holding(kept: Mapping[str, tuple[bytes, ActualRole]], moved: set[str], skip: Iterable[str]) -> list[str]:
    """The kept roles (but ``skip``) a member of a role of ``moved``: their memberships' keys are
    the groups' oids, so such a role's key did not move while a group's name did."""
    if not moved:
        return []
    skipped = set(skip)
    return [name for name, (_, role) in kept.items() if name not in skipped and not role.member_of.isdisjoint(moved)]


def read_roles(
    query: Query,
    only: frozenset[str] | None,
    kept: dict[str, tuple[bytes, ActualRole]] | None,
) -> dict[str, ActualRole]:
    """Every role (``only`` None) or the named ones, with their memberships.  With ``kept``
    (what the last inspect kept): all roles, reading in full only those whose server-side hash
    differs (all of them the first time), then ``kept`` is this read's; with ``only`` too, the
    named roles' entries are refreshed (verify's read-back)."""
    if only is not None:
        names = sorted(only)
        roles = _read(query, names) if names else {}
        if names and kept is not None:
            named = query(ROLE_HASHES_NAMED_QUERY, (names,))
            refresh_kept([(str(row[0]), bytes(row[1])) for row in named], roles, names, kept)
        return roles
    if kept is None:
        return _read(query, None)
    hashes = role_keys(query)
    changed = changed_roles(hashes, kept)
    fresh = _read(query, None if len(changed) * 2 > len(hashes) else changed) if changed else {}
    return merge_roles(hashes, fresh, kept)


def _read(query: Query, names: list[str] | None) -> dict[str, ActualRole]:
    if names is None:
        return build_roles(query(ROLES_QUERY, None), query(MEMBERSHIPS_QUERY, None))
    return build_roles(query(ROLES_NAMED_QUERY, (names,)), query(MEMBERSHIPS_NAMED_QUERY, (names,)))
