"""Dropping a role whose retention has passed, in every database of the cluster.

``REASSIGN OWNED`` and ``DROP OWNED`` act on one database at a time, so the
target connects to each database (``databases`` in the target's config, or
every database in ``pg_database`` that allows connections) and, in one
transaction there, hands the role's objects to the heir and drops its
privileges; then, in the target's own database, does the same and drops the
role.  Databases are handled one after another: when one step fails the role
stays (disabled, marked, without memberships) and the error names the database.

A least-privilege (CREATEROLE) account may only reassign objects of roles it
has the privileges of: inside each transaction it grants itself the role and,
when needed, the heir, and revokes what it granted before committing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from provisioner.core.values.plan import Change
from provisioner.errors import TargetUnavailable
from provisioner.targets.base import ChangeFailed
from provisioner.targets.pg_apply import pg_message

DATABASES_QUERY = (
    "SELECT datname::text FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
)
HAS_ROLE = "SELECT pg_catalog.pg_has_role(current_user, %s, 'USAGE')"

Connect = Callable[[str], "psycopg.Connection[Any]"]


def _run(conn: psycopg.Connection[Any], *parts: str | sql.Composable) -> None:
    conn.execute(sql.Composed([sql.SQL(p) if isinstance(p, str) else p for p in parts]))


def hand_over(conn: psycopg.Connection[Any], role: str, heir: str | None, *, drop: bool) -> int:
    """In the open transaction of ``conn``: reassign and drop what ``role`` owns
    in this database, then (``drop``) drop the role.  Returns statements run."""
    added: list[str] = []
    count = 0
    for name in (role, heir):
        if name is None:
            continue
        count += 1
        (member,) = conn.execute(HAS_ROLE, (name,)).fetchone() or (False,)
        if not member:
            _run(conn, "GRANT ", sql.Identifier(name), " TO CURRENT_USER")
            added.append(name)
            count += 1
    new_owner: str | sql.Composable = "CURRENT_USER" if heir is None else sql.Identifier(heir)
    _run(conn, "REASSIGN OWNED BY ", sql.Identifier(role), " TO ", new_owner)
    _run(conn, "DROP OWNED BY ", sql.Identifier(role))
    count += 2
    for name in added:
        if not (drop and name == role):
            _run(conn, "REVOKE ", sql.Identifier(name), " FROM CURRENT_USER")
            count += 1
    if drop:
        _run(conn, "DROP ROLE ", sql.Identifier(role))
        count += 1
    return count


DETAIL_LIMIT = 600
"""Characters of PostgreSQL's DETAIL kept in a failed drop's message (it lists up to 100 objects)."""


def drop_error(role: str, database: str, exc: psycopg.Error) -> str:
    """A failed drop's message: the database, the server's message and its DETAIL -- for
    ``role ... cannot be dropped because some objects depend on it`` the DETAIL is the only
    place that says which objects, and in which database (``1 object in database scratch``)."""
    detail = " ".join((exc.diag.message_detail or "").split())
    if len(detail) > DETAIL_LIMIT:
        detail = detail[:DETAIL_LIMIT] + " ..."
    return f"drop role {role}: database {database}: {pg_message(exc)}" + (f" ({detail})" if detail else "")


def databases(conn: psycopg.Connection[Any], configured: Sequence[str]) -> list[str]:
    if configured:
        return list(configured)
    return [str(row[0]) for row in conn.execute(DATABASES_QUERY).fetchall()]


def hand_over_elsewhere(
    conn: psycopg.Connection[Any], connect: Connect, change: Change, configured: Sequence[str]
) -> int:
    """Reassign and drop what ``change.role`` owns in every database but the
    one ``conn`` is connected to, one committed transaction per database.
    (Harmless if the drop itself then fails: the role is already disabled.)"""
    role, heir = change.role, change.param("reassign_to")
    here = conn.info.dbname
    count = 0
    try:
        names = databases(conn, configured)
    except psycopg.Error as exc:
        raise ChangeFailed(f"drop role {role}: cannot list databases: {pg_message(exc)}", change) from exc
    for db in names:
        if db == here:
            continue
        try:
            other = connect(db)
        except TargetUnavailable as exc:
            if "does not exist" in str(exc):
                continue  # dropped since it was listed: nothing is owned there any more
            raise ChangeFailed(f"drop role {role}: database {db}: {exc}", change) from exc
        try:
            with other.transaction():
                count += hand_over(other, role, heir, drop=False)
        except psycopg.Error as exc:
            raise ChangeFailed(drop_error(role, db, exc), change) from exc
        finally:
            other.close()
    return count
