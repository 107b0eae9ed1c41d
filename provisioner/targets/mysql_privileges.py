"""Object privileges on MariaDB: read them, grant and revoke them (docs/mysql.md).

A PostgreSQL schema is a MariaDB database; the server is the one catalog
database (``Obj.database == ""``).  Read in eight queries whatever the number
of objects: the inventory from ``information_schema`` (databases, tables and
sequences, columns, routines with their argument types) and the grants from
``mysql.db``, ``mysql.tables_priv``, ``mysql.columns_priv`` and
``mysql.procs_priv``; global privileges come from the accounts' ``access``
bits already read.  Grants are kept for managed accounts and roles, the roles
they are members of, and ``PUBLIC`` (MariaDB 10.11+).

Database-level grants (``db``.*) are read as ``name = "*"`` objects: table
privileges as ``table``, ``EXECUTE`` / ``ALTER ROUTINE`` as ``function``, the
rest (``CREATE``, ``LOCK TABLES`` ...) as ``schema``.  In a database-level
grant ``_`` and ``%`` are wildcards: the provisioner escapes them; a grant
found with an unescaped wildcard is read as the schema ``<pattern> (pattern)``
(never taken for the literal name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from provisioner.core.privileges.access import AclEntry, ObjectAcl
from provisioner.core.values.grants import (
    COLUMN,
    DATABASE,
    FUNCTION,
    PUBLIC,
    SCHEMA,
    SEQUENCE,
    TABLE,
    Grant,
    Inventory,
    Obj,
    PrivilegeSnapshot,
)
from provisioner.core.values.model import ActualRole
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.targets.mysql_apply import Executor, quote_ident
from provisioner.targets.mysql_inspect import Account, Names, _text

Query = Callable[[str, Any], list[tuple[Any, ...]]]

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
PATTERN = " (pattern)"

_NOT_SYSTEM = "NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', %s)"
SCHEMATA_QUERY = f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME {_NOT_SYSTEM}"
TABLES_QUERY = (
    f"SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA {_NOT_SYSTEM}"
)
COLUMNS_QUERY = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS"
    f" WHERE TABLE_SCHEMA {_NOT_SYSTEM} ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
)
ROUTINES_QUERY = f"""
SELECT r.ROUTINE_SCHEMA, r.ROUTINE_NAME, r.ROUTINE_TYPE,
       (SELECT GROUP_CONCAT(LOWER(p.DATA_TYPE) ORDER BY p.ORDINAL_POSITION SEPARATOR ',')
          FROM information_schema.PARAMETERS p
         WHERE p.SPECIFIC_SCHEMA = r.ROUTINE_SCHEMA AND p.SPECIFIC_NAME = r.SPECIFIC_NAME
           AND p.ROUTINE_TYPE = r.ROUTINE_TYPE AND p.ORDINAL_POSITION > 0)
  FROM information_schema.ROUTINES r WHERE r.ROUTINE_SCHEMA {_NOT_SYSTEM}
"""

DB_PRIVILEGES: tuple[tuple[str, str, str], ...] = (
    ("Select_priv", "SELECT", TABLE),
    ("Insert_priv", "INSERT", TABLE),
    ("Update_priv", "UPDATE", TABLE),
    ("Delete_priv", "DELETE", TABLE),
    ("References_priv", "REFERENCES", TABLE),
    ("Trigger_priv", "TRIGGER", TABLE),
    ("Index_priv", "INDEX", TABLE),
    ("Alter_priv", "ALTER", TABLE),
    ("Drop_priv", "DROP", TABLE),
    ("Create_view_priv", "CREATE VIEW", TABLE),
    ("Show_view_priv", "SHOW VIEW", TABLE),
    ("Delete_history_priv", "DELETE HISTORY", TABLE),
    ("Execute_priv", "EXECUTE", FUNCTION),
    ("Alter_routine_priv", "ALTER ROUTINE", FUNCTION),
    ("Create_priv", "CREATE", SCHEMA),
    ("Create_tmp_table_priv", "CREATE TEMPORARY TABLES", SCHEMA),
    ("Lock_tables_priv", "LOCK TABLES", SCHEMA),
    ("Create_routine_priv", "CREATE ROUTINE", SCHEMA),
    ("Event_priv", "EVENT", SCHEMA),
    ("Grant_priv", "GRANT OPTION", SCHEMA),
)
DB_QUERY = f"SELECT Host, Db, User, {', '.join(c for c, _, _ in DB_PRIVILEGES)} FROM mysql.db"
TABLES_PRIV_QUERY = "SELECT Host, Db, User, Table_name, Table_priv FROM mysql.tables_priv WHERE Table_priv <> ''"
COLUMNS_PRIV_QUERY = "SELECT Host, Db, User, Table_name, Column_name, Column_priv FROM mysql.columns_priv"
PROCS_PRIV_QUERY = "SELECT Host, Db, User, Routine_name, Routine_type, Proc_priv FROM mysql.procs_priv"

GLOBAL_BITS: tuple[tuple[int, str], ...] = tuple(
    (1 << i, name)
    for i, name in enumerate(
        (
            "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "SHUTDOWN", "PROCESS", "FILE",
            "GRANT OPTION", "REFERENCES", "INDEX", "ALTER", "SHOW DATABASES", "SUPER", "CREATE TEMPORARY TABLES",
            "LOCK TABLES", "EXECUTE", "REPLICATION SLAVE", "BINLOG MONITOR", "CREATE VIEW", "SHOW VIEW",
            "CREATE ROUTINE", "ALTER ROUTINE", "CREATE USER", "EVENT", "TRIGGER", "CREATE TABLESPACE",
            "DELETE HISTORY", "SET USER", "FEDERATED ADMIN", "CONNECTION ADMIN", "READ_ONLY ADMIN",
            "REPLICATION SLAVE ADMIN", "REPLICATION MASTER ADMIN", "BINLOG ADMIN", "BINLOG REPLAY",
            "SLAVE MONITOR",
        )
    )
)  # fmt: skip
"""MariaDB's global privilege bits (``mysql.global_priv`` ``access``), lowest first."""

ALLOWED = frozenset({p for _, p, _ in DB_PRIVILEGES} | {p for _, p in GLOBAL_BITS})
"""Privilege names a GRANT / REVOKE statement may carry (never put into SQL unchecked)."""

_SET_NAMES = {"GRANT": "GRANT OPTION", "SHOW VIEW": "SHOW VIEW", "DELETE VERSIONING ROWS": "DELETE HISTORY"}
_WILDCARD = re.compile(r"(?<!\\)[_%]")


def _set(value: Any) -> list[str]:
    """A ``SET`` column (``'Select,Insert'``) as privilege names."""
    out = []
    for item in _text(value).split(","):
        name = item.strip().upper()
        if name:
            out.append(_SET_NAMES.get(name, name))
    return out


def schema_of_pattern(db: str) -> str:
    """The schema a database-level grant's ``Db`` names: escaped wildcards unescaped;
    a pattern (an unescaped ``_`` or ``%``) is never the literal name."""
    if _WILDCARD.search(db):
        return db + PATTERN
    return db.replace("\\_", "_").replace("\\%", "%")


def pattern_of_schema(schema: str) -> str:
    """The ``Db`` of a database-level grant on ``schema`` (wildcards escaped)."""
    if schema.endswith(PATTERN):
        return schema.removesuffix(PATTERN)
    return schema.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def read_inventory(query: Query, meta_database: str) -> tuple[Inventory, dict[tuple[str, str], str]]:
    """The objects grants may name (every database but the system ones and the marker
    database), and per (database, routine name) its signature ``name(types)``."""
    schemas = {_text(s): "" for (s,) in query(SCHEMATA_QUERY, (meta_database,))}
    tables: dict[str, list[str]] = {}
    sequences: dict[str, list[str]] = {}
    for schema, name, kind in query(TABLES_QUERY, (meta_database,)):
        into = sequences if _text(kind) == "SEQUENCE" else tables
        into.setdefault(_text(schema), []).append(_text(name))
    columns: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in query(COLUMNS_QUERY, (meta_database,)):
        columns.setdefault((_text(schema), _text(table)), []).append(_text(column))
    functions: dict[str, list[str]] = {}
    signatures: dict[tuple[str, str], str] = {}
    for schema, name, _kind, args in query(ROUTINES_QUERY, (meta_database,)):
        signature = f"{_text(name)}({_text(args) if args is not None else ''})"
        signatures[(_text(schema), _text(name))] = signature
        functions.setdefault(_text(schema), []).append(signature)
    inv = Inventory(
        "",
        "",
        schemas,
        {s: tuple(sorted(set(t))) for s, t in tables.items()},
        {s: tuple(sorted(set(t))) for s, t in sequences.items()},
        {s: tuple(sorted(set(f))) for s, f in functions.items()},
        {k: tuple(v) for k, v in columns.items()},
        database_level=True,
    )
    return inv, signatures


def read_privileges(
    query: Query,
    roles: Mapping[str, ActualRole],
    names: Names,
    accounts: Iterable[Account],
    meta_database: str,
    everyone: bool = False,
) -> PrivilegeSnapshot:
    """Privileges of managed accounts and roles, the roles they are members of, and PUBLIC
    (``everyone``: of every account and role, for ``provisioner access``)."""
    inv, signatures = read_inventory(query, meta_database)
    managed = {n for n, r in roles.items() if r.marker is not None}
    keep = managed | {g for n in managed for g in roles[n].member_of} | {PUBLIC}
    if everyone:
        keep |= set(roles)
    grants: set[Grant] = set()

    def holder(user: Any, host: Any) -> str:
        u, h = _text(user), _text(host)
        return PUBLIC if u == "PUBLIC" and h == "" else names.name(u, h)

    for row in query(DB_QUERY, None):
        who = holder(row[2], row[0])
        if who not in keep:
            continue
        schema = schema_of_pattern(_text(row[1]))
        for (_, priv, kind), flag in zip(DB_PRIVILEGES, row[3:], strict=True):
            if _text(flag) == "Y":
                obj = Obj("", SCHEMA, schema) if kind == SCHEMA else Obj("", kind, schema, "*")
                grants.add(Grant(who, obj, priv))
    for host, db, user, table, privs in query(TABLES_PRIV_QUERY, None):
        who = holder(user, host)
        if who in keep:
            kind = SEQUENCE if _text(table) in inv.sequences.get(_text(db), ()) else TABLE
            grants |= {Grant(who, Obj("", kind, _text(db), _text(table)), p) for p in _set(privs)}
    for host, db, user, table, column, privs in query(COLUMNS_PRIV_QUERY, None):
        who = holder(user, host)
        if who in keep:
            obj = Obj("", COLUMN, _text(db), _text(table), _text(column))
            grants |= {Grant(who, obj, p) for p in _set(privs)}
    for host, db, user, routine, _type, privs in query(PROCS_PRIV_QUERY, None):
        who = holder(user, host)
        if who in keep:
            signature = signatures.get((_text(db), _text(routine)), f"{_text(routine)}()")
            grants |= {Grant(who, Obj("", FUNCTION, _text(db), signature), p) for p in _set(privs)}
    for account in accounts:
        who = names.name(account.user, account.host)
        if who in keep and not account.system:
            grants |= {Grant(who, Obj("", DATABASE), p) for bit, p in GLOBAL_BITS if account.access & bit}
    return PrivilegeSnapshot("", {"": inv}, frozenset(grants))


# --------------------------------------------------------------------------- statements


def _on(obj: Obj, quote: Callable[[str], str]) -> str:
    if obj.kind == DATABASE:
        return "*.*"
    if obj.kind == SCHEMA or obj.name == "*":
        return f"{quote(pattern_of_schema(obj.schema))}.*"
    if obj.kind == FUNCTION:
        raise ValueError("a routine needs its type (FUNCTION or PROCEDURE)")
    return f"{quote(obj.schema)}.{quote(obj.name)}"


def statements(
    grant: bool,
    obj: Obj,
    privileges: Iterable[str],
    grantee: str,
    quote: Callable[[str], str],
    routine_types: Callable[[Obj], list[str]],
) -> list[str]:
    """The GRANT or REVOKE statements of one change (several for a routine that is both
    a function and a procedure).  Privilege names are checked against :data:`ALLOWED`."""
    privs = list(privileges)
    unknown = [p for p in privs if p not in ALLOWED]
    if unknown or not privs:
        raise ValueError(f"privilege(s) {unknown or privs!r} not known to MariaDB")
    verb, word = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    if obj.kind == COLUMN:
        text = ", ".join(f"{p} ({quote(obj.column)})" for p in privs)
        return [f"{verb} {text} ON {quote(obj.schema)}.{quote(obj.name)} {word} {grantee}"]
    if obj.kind == FUNCTION and obj.name != "*":
        routine = obj.name.split("(", 1)[0]
        kinds = routine_types(obj)
        if not kinds:
            raise ValueError(f"no routine {obj.schema}.{routine} found")
        return [
            f"{verb} {', '.join(privs)} ON {kind} {quote(obj.schema)}.{quote(routine)} {word} {grantee}"
            for kind in kinds
        ]
    return [f"{verb} {', '.join(privs)} ON {_on(obj, quote)} {word} {grantee}"]


ROUTINE_TYPES_QUERY = (
    "SELECT DISTINCT ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s AND ROUTINE_NAME = %s"
    " UNION SELECT DISTINCT Routine_type FROM mysql.procs_priv WHERE Db = %s AND Routine_name = %s"
)


def routine_types(query: Query, obj: Obj) -> list[str]:
    """``FUNCTION`` and / or ``PROCEDURE``: what ``obj`` names in its database."""
    routine = obj.name.split("(", 1)[0]
    rows = query(ROUTINE_TYPES_QUERY, (obj.schema, routine, obj.schema, routine))
    return sorted({_text(t).upper() for (t,) in rows} & {"FUNCTION", "PROCEDURE"})


# --------------------------------------------------------------------------- provisioner access


def object_acls(snapshot: PrivilegeSnapshot, text: str) -> list[ObjectAcl]:
    """The ACL of the object ``text`` names (``db.table``, ``db.routine``, ``db``), from
    every grant read: the object's own, its columns', and the database-level grants
    covering it.  MariaDB has no object owner."""
    inv = snapshot.databases.get("")
    if inv is None:
        return []
    schema, _, name = text.partition(".")
    objs: list[Obj] = []
    if not name and schema in inv.schemas:
        objs.append(Obj("", SCHEMA, schema))
    for kind, source in ((TABLE, inv.tables), (SEQUENCE, inv.sequences)):
        if name in source.get(schema, ()):
            objs.append(Obj("", kind, schema, name))
    objs += [Obj("", FUNCTION, schema, f) for f in inv.functions.get(schema, ()) if f.split("(", 1)[0] == name]
    out = []
    for obj in objs:
        entries = {e for e in (_entry(obj, g) for g in snapshot.grants) if e is not None}
        out.append(ObjectAcl(obj, "", tuple(sorted(entries, key=lambda e: (e.grantee, e.privilege, e.column)))))
    return out


_TABLE_PRIVILEGES = frozenset(p for _, p, kind in DB_PRIVILEGES if kind == TABLE)
_GLOBAL_ON: Mapping[str, frozenset[str]] = {
    TABLE: _TABLE_PRIVILEGES,
    SEQUENCE: _TABLE_PRIVILEGES,
    FUNCTION: frozenset({"EXECUTE", "ALTER ROUTINE"}),
}
"""Global (``*.*``) privileges that apply to one object of a kind."""


def _entry(obj: Obj, g: Grant) -> AclEntry | None:
    """The ACL entry ``g`` gives on ``obj``: its own grant, a column of it, or a
    database-level or global grant covering it."""
    o = g.obj
    own = o.schema == obj.schema and o.kind == obj.kind and o.name == obj.name
    wide = obj.kind != SCHEMA and o.schema == obj.schema and o.name == "*" and _covers(o.kind, obj.kind)
    if own or wide or (o.kind == DATABASE and g.privilege in _GLOBAL_ON.get(obj.kind, ())):
        return AclEntry(g.role, g.privilege)
    if obj.kind == TABLE and o.kind == COLUMN and o.schema == obj.schema and o.name == obj.name:
        return AclEntry(g.role, g.privilege, o.column)
    return None


def _covers(wildcard_kind: str, kind: str) -> bool:
    return wildcard_kind == kind or (wildcard_kind == TABLE and kind == SEQUENCE)


# --------------------------------------------------------------------------- apply steps


def _change_privileges(change: Change) -> list[str]:
    return [p.strip() for p in str(change.param("privileges") or "").split(",") if p.strip()]


def _run_privilege(ex: Executor, change: Change, grant: bool) -> None:
    if not ex.settings.mariadb:
        raise ValueError("object privileges are managed on MariaDB only, not MySQL")
    obj = Obj.from_params(dict(change.params))
    grantee = "PUBLIC" if change.role == PUBLIC else ex.grantee(change.role)
    for statement in statements(
        grant, obj, _change_privileges(change), grantee, quote_ident, lambda o: routine_types(ex.run, o)
    ):
        ex.run(statement)


def grant_privilege(ex: Executor, change: Change) -> None:
    _run_privilege(ex, change, True)


def revoke_privilege(ex: Executor, change: Change) -> None:
    _run_privilege(ex, change, False)


def check_privilege(change: Change) -> None:
    """Refuse, before anything runs, a privilege change no statement can express."""
    obj = Obj.from_params(dict(change.params))
    privs = _change_privileges(change)
    if obj.kind not in (DATABASE, SCHEMA, TABLE, SEQUENCE, COLUMN, FUNCTION):
        raise ValueError(f"object type {obj.kind!r} has no MariaDB equivalent")
    if obj.kind == DATABASE and change.kind is ChangeKind.GRANT_PRIVILEGE:
        raise ValueError("global (*.*) privileges are never granted")
    statements(change.kind is ChangeKind.GRANT_PRIVILEGE, obj, privs, "x", quote_ident, lambda o: ["FUNCTION"])


PRIVILEGE_STEPS: dict[ChangeKind, Callable[[Executor, Change], None]] = {
    ChangeKind.GRANT_PRIVILEGE: grant_privilege,
    ChangeKind.REVOKE_PRIVILEGE: revoke_privilege,
}
