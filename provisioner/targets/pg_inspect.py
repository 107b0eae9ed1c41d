"""Catalog reading for the PostgreSQL target.

Everything is read in a constant number of queries (session facts, roles with
their comments, memberships), whatever the number of roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from provisioner.core import marker as marker_codec
from provisioner.core.model import ActualRole

BOOTSTRAP_SUPERUSER_OID = 10

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
ROLES_QUERY = """
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
 ORDER BY r.rolname
"""

MEMBERSHIPS_QUERY = """
SELECT DISTINCT m.rolname::text, g.rolname::text
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles m ON m.oid = am.member
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
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


def group_memberships(rows: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for member, group in rows:
        out.setdefault(member, set()).add(group)
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
    role_rows: Iterable[tuple[Any, ...]], membership_rows: Iterable[tuple[str, str]]
) -> Mapping[str, ActualRole]:
    memberships = group_memberships(membership_rows)
    roles = (build_role(row, memberships.get(row[1], frozenset())) for row in role_rows)
    return {role.name: role for role in roles}


# The no-op short-circuit's catalog digest (provisioner/shortcircuit.py): one
# server-side md5 over the roles a plan can depend on -- every managed role (its
# comment carries the marker), every role named like a desired role (%s: the names)
# and every role on the other side of their memberships -- with oid, attributes,
# expiry and comment, and over all of their memberships.  A hand-made role with a
# desired name, a GRANT or REVOKE touching a managed role, or a role dropped and
# re-created each change it; roles that no plan can touch do not.
CATALOG_DIGEST_QUERY = """
WITH core AS (
  SELECT d.objoid AS oid FROM pg_catalog.pg_shdescription d
   WHERE d.classoid = 'pg_catalog.pg_authid'::regclass AND d.description LIKE 'provisioner:managed%%'
  UNION
  SELECT r.oid FROM pg_catalog.pg_roles r JOIN unnest(%s::text[]) AS want(name) ON want.name = r.rolname
), edges AS (
  SELECT am.member, am.roleid, am.admin_option FROM pg_catalog.pg_auth_members am
   WHERE am.member IN (SELECT oid FROM core) OR am.roleid IN (SELECT oid FROM core)
), scope AS (
  SELECT oid FROM core UNION SELECT member FROM edges UNION SELECT roleid FROM edges
)
SELECT md5(coalesce((
         SELECT string_agg(concat_ws('|', r.oid, r.rolname, r.rolcanlogin, r.rolsuper, r.rolreplication,
                                   r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolinherit,
                                   extract(epoch FROM r.rolvaliduntil),
                                   d.description), E'\\n' ORDER BY r.oid)
           FROM pg_catalog.pg_roles r JOIN scope s ON s.oid = r.oid
           LEFT JOIN pg_catalog.pg_shdescription d
             ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass), '')
       || E'\\n--\\n' ||
       coalesce((
         SELECT string_agg(e.member::text || '>' || e.roleid::text || ':' || e.admin_option::text,
                           ',' ORDER BY e.member, e.roleid, e.admin_option)
           FROM edges e), ''))
"""
