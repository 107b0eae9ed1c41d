"""Catalog reading for the PostgreSQL target.

Everything is read in a constant number of queries (session facts, roles with
their comments, memberships), whatever the number of roles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
# an apply, so that it costs what the plan touched, not the size of the catalog.
ROLES_NAMED_QUERY = _ROLES + " WHERE r.rolname = ANY(%s::text[]) ORDER BY r.rolname"
MEMBERSHIPS_NAMED_QUERY = (
    _MEMBERSHIPS + " JOIN pg_catalog.pg_roles m ON m.oid = am.member WHERE m.rolname = ANY(%s::text[])"
)

# The warm daemon's incremental inspect: per role one SHA-256 over everything
# build_role reads (each text field quoted, so no two different rows hash alike) and the
# names of the roles it is a member of.  Only roles whose hash differs from the one the
# last inspect kept are read in full (ROLES_NAMED_QUERY, MEMBERSHIPS_NAMED_QUERY): an
# unchanged role is the very same object, and 10,000 unchanged roles cost one narrow query.
# Group names by a join, not pg_get_userbyid: that reads the catalog cache, which may be newer
# than this transaction's snapshot (a rename committed meanwhile would be hashed but not read).
_GROUPS = "string_agg(DISTINCT quote_ident(g.rolname), ',' ORDER BY quote_ident(g.rolname))"
_MEMBER_OF = "FROM pg_catalog.pg_auth_members am JOIN pg_catalog.pg_roles g ON g.oid = am.roleid"


def _hashed_row(description: str) -> str:
    return f"""sha256(convert_to(concat_ws('|', r.oid, quote_nullable(r.rolname::text), r.rolcanlogin,
                r.rolsuper, r.rolreplication, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb,
                quote_nullable(r.rolvaliduntil::text), quote_nullable({description}),
                quote_nullable(m.groups)), 'UTF8'))"""


# Over the whole catalog the group names are aggregated from one sorted, distinct subquery
# (the same text as _GROUPS gives): a DISTINCT ... ORDER BY inside the aggregate sorts once per
# role and took a third longer at 90,000 memberships.  Should the input order ever not carry
# through, a role's hash would differ and it would be read again: a needless read, never a
# missed change.
ROLE_HASHES_QUERY = f"""
SELECT r.rolname::text, {_hashed_row("d.description")}
  FROM pg_catalog.pg_roles r
  LEFT JOIN pg_catalog.pg_shdescription d
    ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass
  LEFT JOIN (SELECT s.member, string_agg(s.name, ',') AS groups
               FROM (SELECT DISTINCT am.member, quote_ident(g.rolname) AS name {_MEMBER_OF} ORDER BY 1, 2) s
              GROUP BY s.member) m ON m.member = r.oid
"""
# The same hashes for the named roles only (%s: their names), each looked up by index: a
# join with pg_shdescription here can turn into a nested loop over every comment per role.
ROLE_HASHES_NAMED_QUERY = f"""
SELECT r.rolname::text, {_hashed_row("pg_catalog.shobj_description(r.oid, 'pg_authid')")}
  FROM pg_catalog.pg_roles r
  LEFT JOIN LATERAL (SELECT {_GROUPS} AS groups {_MEMBER_OF} WHERE am.member = r.oid) m ON true
 WHERE r.rolname = ANY(%s::text[])
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


def group_memberships(rows: Iterable[tuple[int, str]]) -> dict[int, frozenset[str]]:
    """Per member (by oid), the roles it is a member of; each group's name is one string object,
    however many members it has (100,000s of memberships name a few thousand groups)."""
    out: dict[int, set[str]] = {}
    names: dict[str, str] = {}
    for member, group in rows:
        out.setdefault(member, set()).add(names.setdefault(group, group))
    return {member: frozenset(groups) for member, groups in out.items()}


def build_role(row: tuple[Any, ...], member_of: frozenset[str]) -> ActualRole:
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
        marker=marker_codec.parse(comment),
        member_of=member_of,
        system=is_system_role(int(oid), name),
    )


def build_roles(
    role_rows: Iterable[tuple[Any, ...]], membership_rows: Iterable[tuple[int, str]]
) -> dict[str, ActualRole]:
    """Roles from their rows (oid first) and the membership rows (member oid, group name)."""
    memberships = group_memberships(membership_rows)
    empty: frozenset[str] = frozenset()
    roles = (build_role(row, memberships.get(row[0], empty)) for row in role_rows)
    return {role.name: role for role in roles}


def changed_roles(hashes: Iterable[tuple[str, bytes]], kept: Mapping[str, tuple[bytes, ActualRole]]) -> list[str]:
    """The roles of ``hashes`` (name, hash) that ``kept`` (what the last inspect built) lacks or
    holds with another hash: the only ones an incremental inspect reads in full."""
    out = []
    for name, digest in hashes:
        last = kept.get(name)
        if last is None or last[0] != digest:
            out.append(name)
    return out


def refresh_kept(
    hashes: Iterable[tuple[str, bytes]],
    fresh: Mapping[str, ActualRole],
    names: Iterable[str],
    kept: dict[str, tuple[bytes, ActualRole]],
) -> None:
    """After reading the named roles (``fresh``, with their ``hashes``, one snapshot), ``kept``
    holds them as read: a role named but not found is gone from it."""
    for name in names:
        kept.pop(name, None)
    for name, digest in hashes:
        role = fresh.get(name)
        if role is not None:
            kept[name] = (digest, role)


def merge_roles(
    hashes: Iterable[tuple[str, bytes]],
    fresh: Mapping[str, ActualRole],
    kept: dict[str, tuple[bytes, ActualRole]],
) -> dict[str, ActualRole]:
    """Every role of ``hashes``: the one just read (``fresh``) or else the one ``kept``, the
    same object; ``kept`` becomes this inspect's (roles gone from the catalog are dropped)."""
    out: dict[str, ActualRole] = {}
    now: dict[str, tuple[bytes, ActualRole]] = {}
    for name, digest in hashes:
        role = fresh.get(name)
        if role is None:
            role = kept[name][1]
        out[name] = role
        now[name] = (digest, role)
    kept.clear()
    kept.update(now)
    return dict(sorted(out.items()))


# The no-op short-circuit's catalog digest (provisioner/engine/shortcircuit.py): one
# server-side, order-independent digest of the cluster's whole role catalog --
# per role its oid, name, attributes, connection limit, expiry and comment, per
# membership its two oids and admin option -- as row counts and two sums of seeded
# 64-bit hashes (hashtextextended, PostgreSQL 11+; no sort, ~0.4 s at 100,000 roles).
# Any role created, dropped, altered or commented and any GRANT or REVOKE of a role
# changes it, including on roles no plan touches (a needless full run, never a missed
# one).  A change detector, not a signature: the full run at each UTC date change
# bounds what a deliberately forged collision could hide.
_ROLE_ROW = """concat_ws('|', r.oid, r.rolname, r.rolcanlogin, r.rolsuper, r.rolreplication, r.rolbypassrls,
                     r.rolcreaterole, r.rolcreatedb, r.rolinherit, r.rolconnlimit,
                     extract(epoch FROM r.rolvaliduntil), d.description)"""
_EDGE_ROW = "concat_ws('|', e.member, e.roleid, e.admin_option)"
_SUMS = (
    "count(*) || ':' || coalesce(sum(hashtextextended(x, 1)::numeric) || '.'"
    " || sum(hashtextextended(x, 2)::numeric), '')"
)
CATALOG_DIGEST_QUERY = f"""
SELECT (SELECT {_SUMS} FROM (SELECT {_ROLE_ROW} AS x FROM pg_catalog.pg_roles r
          LEFT JOIN pg_catalog.pg_shdescription d
            ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass) AS roles)
       || '/' ||
       (SELECT {_SUMS} FROM (SELECT {_EDGE_ROW} AS x FROM pg_catalog.pg_auth_members e) AS edges)
"""


def read_roles(
    query: Query, only: frozenset[str] | None, kept: dict[str, tuple[bytes, ActualRole]] | None
) -> dict[str, ActualRole]:
    """Every role (``only`` None) or the named ones, with their memberships.  With ``kept``
    (what the last inspect kept): all roles, reading in full only those whose server-side hash
    differs (all of them the first time), then ``kept`` is this read's; with ``only`` too, the
    named roles' entries are refreshed (verify's read-back)."""
    if only is not None:
        names = sorted(only)
        roles = _read(query, names) if names else {}
        if names and kept is not None:
            hashes = query(ROLE_HASHES_NAMED_QUERY, (names,))
            refresh_kept([(str(n), bytes(h)) for n, h in hashes], roles, names, kept)
        return roles
    if kept is None:
        return _read(query, None)
    hashes = [(str(name), bytes(digest)) for name, digest in query(ROLE_HASHES_QUERY, None)]
    changed = changed_roles(hashes, kept)
    fresh = _read(query, None if len(changed) * 2 > len(hashes) else changed) if changed else {}
    return merge_roles(hashes, fresh, kept)


def _read(query: Query, names: list[str] | None) -> dict[str, ActualRole]:
    if names is None:
        return build_roles(query(ROLES_QUERY, None), query(MEMBERSHIPS_QUERY, None))
    return build_roles(query(ROLES_NAMED_QUERY, (names,)), query(MEMBERSHIPS_NAMED_QUERY, (names,)))
