"""Entries that moved, were renamed or deleted between two incremental LDAP reads.

* A user (group) read at a new DN whose stable id (name) a stored record at another DN has:
  the entry moved, when that old DN no longer holds a user (group).  Its old record goes at
  once -- otherwise, until the next deletion scan, one person is two entries with one stable
  id (a leaver), one group two groups of one name (rules naming it match nobody).  One base
  search per candidate; more than :data:`LOOKUPS` candidates (a reorganisation) and the
  caller runs the id-only deletion scan instead, which settles them all.
* AD's ``member`` is a linked attribute: when a member moves, is renamed or deleted, the DC
  rewrites or drops the value in every group listing it *without* a new ``uSNChanged`` on the
  group, so the changed-entries search never returns those groups.  :func:`relist` reads
  again every stored group whose member list names a DN that now names another entry (or
  nothing): otherwise a mover loses the group and a new hire given a departed person's DN
  inherits the departed person's groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ldap3
from ldap3.utils.conv import escape_filter_chars

from provisioner.sources.groups import GroupRecord, UserRecord

LOOKUPS = 50
"""More moved candidates than this: one deletion scan instead of a base search each."""
RELIST_CHUNK = 100
"""Groups per ``(|(distinguishedName=...)...)`` search when AD groups are read again."""
NO_SUCH_OBJECT = 32


def stale_users(users: Mapping[str, UserRecord], relinked: set[str], fresh: set[str]) -> list[str]:
    """Stored users not read this run with the stable id of a user read at a DN that is new
    (or held another stable id): the old DNs of entries that may have moved."""
    ids = {users[k].stable_id for k in relinked if k in users and users[k].stable_id}
    return [k for k, rec in users.items() if rec.stable_id in ids and k not in fresh] if ids else []


def stale_groups(groups: Mapping[str, GroupRecord], new: list[GroupRecord], norm: Callable[[str], str]) -> list[str]:
    """Stored groups with a name of a group read this run at a new DN."""
    names = {n.lower() for g in new for n in g.names if n}
    read = {norm(g.dn) for g in new}
    return [k for k, g in groups.items() if k not in read and any(n.lower() in names for n in g.names)] if names else []


def drop_moved(
    conn: ldap3.Connection, check: Callable[[dict[str, object] | None, str], None],
    records: dict[str, UserRecord] | dict[str, GroupRecord], keys: list[str], flt: str,
) -> set[str]:  # fmt: skip
    """Drop the records of ``keys`` whose DN no longer holds an entry matching ``flt``."""
    gone = {k for k in keys if not _holds(conn, check, records[k].dn, flt)}
    for key in gone:
        del records[key]
    return gone


def _holds(conn: ldap3.Connection, check: Callable[[dict[str, object] | None, str], None], dn: str, flt: str) -> bool:
    conn.search(dn, flt, ldap3.BASE, attributes=ldap3.NO_ATTRIBUTES)
    if (conn.result or {}).get("result") == NO_SUCH_OBJECT:
        return False
    check(conn.result, dn)
    return any(item.get("type") == "searchResEntry" for item in conn.response or ())


def relist(
    conn: ldap3.Connection,
    read_groups: Callable[[ldap3.Connection, str], list[GroupRecord]],
    norm: Callable[[str], str],
    groups: dict[str, GroupRecord],
    dns: set[str],
    changed: list[GroupRecord],
) -> None:
    """AD: read again every stored group (not read this run) whose member list names one of
    ``dns``; the changed ones are updated in ``groups`` and appended to ``changed``."""
    done = {norm(g.dn) for g in changed}
    stale = [g.dn for k, g in groups.items() if k not in done and any(norm(m) in dns for m in g.members)]
    for i in range(0, len(stale), RELIST_CHUNK):
        chunk = stale[i : i + RELIST_CHUNK]
        flt = "(|" + "".join(f"(distinguishedName={escape_filter_chars(dn)})" for dn in chunk) + ")"
        for g in read_groups(conn, flt):
            key = norm(g.dn)
            if groups.get(key) != g:
                groups[key] = g
                changed.append(g)
