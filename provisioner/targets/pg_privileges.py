"""Privileges on PostgreSQL: reading them, and the SQL that changes them.

Reading: for each configured database, six catalog queries (the database,
schemas, relations, columns, routines and default privileges, each with
``aclexplode``: every grantee by name, PUBLIC as ``public``) in one REPEATABLE READ,
READ ONLY transaction -- whatever the number of objects; the grants of the managed
roles and PUBLIC are kept.  The same queries return the object inventory wildcard
grants expand against.

Writing: ``GRANT``/``REVOKE`` on databases, schemas, tables, columns,
sequences and routines, and ``ALTER DEFAULT PRIVILEGES FOR ROLE ... IN SCHEMA``.
Identifiers are :class:`psycopg.sql.Identifier`; privilege and object-type
keywords come from fixed lists, never from data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from psycopg import sql

from provisioner.core.values.grants import (
    COLUMN,
    DATABASE,
    DEFAULT,
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

_USER_SCHEMAS = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"


def _acl_grantees(column: str, default: str = "") -> str:
    """A lateral join yielding (rolname, privilege_type) of every grantee in ``column``
    (a constant of this module; PUBLIC as ``public``, a name no role can have), or one row
    of NULLs.  The caller keeps the managed roles' rows: an ACL names a few roles, and a
    filter of 10,000s of managed names sent with each query cost more than all the rows
    (issue 19: 50 ms against 17 ms for the seven queries at 10,000 people).
    ``default``: the ``acldefault`` arguments used while the ACL is NULL (the
    built-in privileges, e.g. PUBLIC's CONNECT on a database or EXECUTE on a
    function, are then in force without appearing in the catalog)."""
    acl = f"coalesce({column}, pg_catalog.acldefault({default}))" if default else column
    return (
        f"LEFT JOIN LATERAL (SELECT coalesce(r.rolname::text, '{PUBLIC}') AS rolname, a.privilege_type"
        f" FROM pg_catalog.aclexplode({acl}) a"
        " LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee"
        " WHERE a.grantee = 0 OR r.oid IS NOT NULL) g ON true"
    )


DATABASE_QUERY = f"""
SELECT d.datname::text, pg_catalog.pg_get_userbyid(d.datdba)::text, g.rolname, g.privilege_type
  FROM pg_catalog.pg_database d
  {_acl_grantees("d.datacl", "'d', d.datdba")}
 WHERE d.datname = current_database()
"""

SCHEMAS_QUERY = f"""
SELECT n.nspname::text, pg_catalog.pg_get_userbyid(n.nspowner)::text, g.rolname, g.privilege_type
  FROM pg_catalog.pg_namespace n
  {_acl_grantees("n.nspacl", "'n', n.nspowner")}
 WHERE {_USER_SCHEMAS}
"""

_RELATION_DEFAULT = """CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner"""
# relkind: r table, p partitioned, v view, m materialized view, f foreign table, S sequence
RELATIONS_QUERY = f"""
SELECT n.nspname::text, c.relname::text, c.relkind = 'S', g.rolname, g.privilege_type
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  {_acl_grantees("c.relacl", _RELATION_DEFAULT)}
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {_USER_SCHEMAS}
"""

COLUMNS_QUERY = f"""
SELECT n.nspname::text, c.relname::text, att.attname::text, g.rolname, g.privilege_type
  FROM pg_catalog.pg_attribute att
  JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  {_acl_grantees("att.attacl")}
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND att.attnum > 0 AND NOT att.attisdropped
   AND {_USER_SCHEMAS}
 ORDER BY att.attrelid, att.attnum
"""

ROUTINES_QUERY = f"""
SELECT n.nspname::text, p.proname::text, pg_catalog.oidvectortypes(p.proargtypes), g.rolname,
       g.privilege_type
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  {_acl_grantees("p.proacl", "'f', p.proowner")}
 WHERE p.prokind IN ('f', 'p') AND {_USER_SCHEMAS}
"""

DEFAULTS_QUERY = f"""
SELECT coalesce(n.nspname, '')::text, pg_catalog.pg_get_userbyid(d.defaclrole)::text, d.defaclobjtype::text,
       coalesce(r.rolname::text, '{PUBLIC}'), a.privilege_type
  FROM pg_catalog.pg_default_acl d
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
  CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
 WHERE d.defaclobjtype IN ('r', 'S', 'f') AND (a.grantee = 0 OR r.oid IS NOT NULL)
"""

_TABLE_PRIVS = "ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']"
# What the provisioner's own role cannot grant: objects whose owner's privileges it does not
# have (pg_has_role ... 'USAGE': the owner, a member of it, or a superuser) and on which it
# holds no grant option.  Only such objects are checked one privilege at a time; a column
# only when it has an ACL of its own (a row with privilege '' says so), else its table decides.
UNGRANTABLE_QUERY = f"""
SELECT 'database', '', '', '', p.p
  FROM pg_catalog.pg_database d, unnest(ARRAY['CONNECT', 'TEMPORARY', 'CREATE']) p(p)
 WHERE d.datname = current_database() AND NOT pg_catalog.pg_has_role(d.datdba, 'USAGE')
   AND NOT pg_catalog.has_database_privilege(d.oid, p.p || ' WITH GRANT OPTION')
UNION ALL
SELECT 'schema', n.nspname::text, '', '', p.p
  FROM pg_catalog.pg_namespace n, unnest(ARRAY['USAGE', 'CREATE']) p(p)
 WHERE {_USER_SCHEMAS} AND NOT pg_catalog.pg_has_role(n.nspowner, 'USAGE')
   AND NOT pg_catalog.has_schema_privilege(n.oid, p.p || ' WITH GRANT OPTION')
UNION ALL
SELECT 'table', n.nspname::text, c.relname::text, '', p.p
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
       unnest({_TABLE_PRIVS}) p(p)
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_SCHEMAS} AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')
   AND NOT pg_catalog.has_table_privilege(c.oid, p.p || ' WITH GRANT OPTION')
UNION ALL
SELECT 'sequence', n.nspname::text, c.relname::text, '', p.p
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
       unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p(p)
 WHERE c.relkind = 'S' AND {_USER_SCHEMAS} AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')
   AND NOT pg_catalog.has_sequence_privilege(c.oid, p.p || ' WITH GRANT OPTION')
UNION ALL
SELECT 'column', n.nspname::text, c.relname::text, att.attname::text, p.p
  FROM pg_catalog.pg_attribute att JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
       unnest(ARRAY['', 'SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) p(p)
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND att.attnum > 0 AND NOT att.attisdropped AND {_USER_SCHEMAS}
   AND att.attacl IS NOT NULL AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')
   AND (p.p = '' OR NOT pg_catalog.has_column_privilege(c.oid, att.attnum, p.p || ' WITH GRANT OPTION'))
UNION ALL
SELECT 'function', n.nspname::text, p.proname::text || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')', '',
       'EXECUTE'
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'p') AND {_USER_SCHEMAS} AND NOT pg_catalog.pg_has_role(p.proowner, 'USAGE')
   AND NOT pg_catalog.has_function_privilege(p.oid, 'EXECUTE WITH GRANT OPTION')
"""

QUERIES = (
    DATABASE_QUERY, SCHEMAS_QUERY, RELATIONS_QUERY, COLUMNS_QUERY, ROUTINES_QUERY, DEFAULTS_QUERY, UNGRANTABLE_QUERY
)

# The daemon's digest of what the queries above read (engine/shortcircuit.py), one
# server-side query per database, order-independent (the role catalog's digest in
# pg_inspect, extended to privileges): every object they list with its owner and ACL,
# so any GRANT, REVOKE, ALTER DEFAULT PRIVILEGES, owner change, or object created,
# dropped or renamed changes it.  Role names in ACLs follow the role catalog's digest.
_SUMS = (
    "count(*) || ':' || coalesce(sum(hashtextextended(x, 1)::numeric) || '.'"
    " || sum(hashtextextended(x, 2)::numeric), '')"
)
DIGEST_QUERY = f"""
SELECT concat_ws('/',
  (SELECT {_SUMS} FROM (SELECT concat_ws('|', d.oid, d.datname, d.datdba, d.datacl::text) AS x
     FROM pg_catalog.pg_database d WHERE d.datname = current_database()) s),
  (SELECT {_SUMS} FROM (SELECT concat_ws('|', n.oid, n.nspname, n.nspowner, n.nspacl::text) AS x
     FROM pg_catalog.pg_namespace n WHERE {_USER_SCHEMAS}) s),
  (SELECT {_SUMS} FROM (SELECT concat_ws('|', c.oid, c.relname, c.relnamespace, c.relkind, c.relowner,
                                         c.relacl::text) AS x
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {_USER_SCHEMAS}) s),
  (SELECT {_SUMS} FROM (SELECT concat_ws('|', att.attrelid, att.attnum, att.attname, att.attacl::text) AS x
     FROM pg_catalog.pg_attribute att JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND att.attnum > 0 AND NOT att.attisdropped
      AND {_USER_SCHEMAS}) s),
  (SELECT {_SUMS} FROM (SELECT concat_ws('|', p.oid, p.proname, p.pronamespace, p.proargtypes::text, p.prokind,
                                         p.proowner, p.proacl::text) AS x
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prokind IN ('f', 'p') AND {_USER_SCHEMAS}) s),
  (SELECT {_SUMS} FROM (SELECT concat_ws('|', d.oid, d.defaclrole, d.defaclnamespace, d.defaclobjtype,
                                         d.defaclacl::text) AS x
     FROM pg_catalog.pg_default_acl d) s))
"""


def privileges_digest(home: str, databases: Sequence[str], query_home: Query, query_in: Callable[[str], Query]) -> str:
    """:data:`DIGEST_QUERY` in every database :func:`read_privileges` reads."""
    names = list(databases) or [home]
    return ";".join(f"{db}={(query_home if db == home else query_in(db))(DIGEST_QUERY, {})[0][0]}" for db in names)
_DEFAULT_TYPES = {"r": "tables", "S": "sequences", "f": "functions"}

Query = Callable[[str, Mapping[str, Any]], list[Any]]


def read_privileges(
    roles: Mapping[str, ActualRole],
    home: str,
    databases: Sequence[str],
    query_home: Query,
    query_in: Callable[[str], Query],
) -> PrivilegeSnapshot:
    """Grants of every managed role (group and login roles: a hand grant to a
    person is drift too), of every role they are members of, and of PUBLIC, and the inventory of every database in
    ``databases`` (empty: ``home``, the connected one).  ``query_home`` runs in
    the caller's snapshot; ``query_in(db)`` gives a query function of another
    database (its own REPEATABLE READ transaction)."""
    managed = _reachable(roles)
    names = list(databases) or [home]
    inventories: dict[str, Inventory] = {}
    grants: set[Grant] = set()
    for db in names:
        inventories[db], found = read_database(query_home if db == home else query_in(db), managed)
        grants |= found
    return PrivilegeSnapshot(names[0], inventories, frozenset(grants))


def _reachable(roles: Mapping[str, ActualRole]) -> set[str]:
    """Every managed role and every role a managed role is a member of, transitively
    (a DBA's group a person was put in by hand passes its grants on too)."""
    out = {n for n, r in roles.items() if r.marker is not None}
    queue = list(out)
    while queue:
        role = roles.get(queue.pop())
        for group in role.member_of if role is not None else ():
            if group not in out:
                out.add(group)
                queue.append(group)
    return out


def read_database(query: Query, managed: Iterable[str]) -> tuple[Inventory, set[Grant]]:
    """The inventory and the grants of ``managed`` and PUBLIC in the connected database,
    in ``len(QUERIES)`` queries run through ``query`` (inside the caller's
    transaction)."""
    wanted = {*managed, PUBLIC}  # a row's role: None (no grant), else kept when wanted
    rows = [query(q, {}) for q in QUERIES]
    db_rows, schema_rows, rel_rows, col_rows, proc_rows, default_rows, ungrantable_rows = rows
    grants: set[Grant] = set()
    database, owner = (db_rows[0][0], db_rows[0][1]) if db_rows else ("", "")
    for _, _, role, priv in db_rows:
        if role in wanted:
            grants.add(Grant(role, Obj(database, DATABASE), priv))
    schemas: dict[str, str] = {}
    for schema, schema_owner, role, priv in schema_rows:
        schemas[schema] = schema_owner
        if role in wanted:
            grants.add(Grant(role, Obj(database, SCHEMA, schema), priv))
    tables: dict[str, set[str]] = {}
    sequences: dict[str, set[str]] = {}
    for schema, name, is_seq, role, priv in rel_rows:
        kind = SEQUENCE if is_seq else TABLE
        (sequences if is_seq else tables).setdefault(schema, set()).add(name)
        if role in wanted:
            grants.add(Grant(role, Obj(database, kind, schema, name), priv))
    columns: dict[tuple[str, str], list[str]] = {}
    for schema, table, col, role, priv in col_rows:
        names = columns.setdefault((schema, table), [])
        if col not in names:
            names.append(col)
        if role in wanted:
            grants.add(Grant(role, Obj(database, COLUMN, schema, table, col), priv))
    functions: dict[str, set[str]] = {}
    for schema, name, args, role, priv in proc_rows:
        signature = f"{name}({args})"
        functions.setdefault(schema, set()).add(signature)
        if role in wanted:
            grants.add(Grant(role, Obj(database, FUNCTION, schema, signature), priv))
    for schema, creator, objtype, role, priv in default_rows:
        if role in wanted:
            grants.add(Grant(role, Obj(database, DEFAULT, schema, _DEFAULT_TYPES[objtype], owner=creator), priv))
    ungrantable: dict[Obj, set[str]] = {}
    for kind, schema, name, col, priv in ungrantable_rows:
        found = ungrantable.setdefault(Obj(database, kind, schema, name, col), set())
        if priv:
            found.add(priv)
    inventory = Inventory(
        database=database,
        owner=owner,
        schemas=schemas,
        tables=_sorted(tables),
        sequences=_sorted(sequences),
        functions=_sorted(functions),
        columns={k: tuple(v) for k, v in columns.items()},
        ungrantable={k: frozenset(v) for k, v in ungrantable.items()},
    )
    return inventory, grants


def _sorted(data: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(sorted(v)) for k, v in data.items()}


# --------------------------------------------------------------------------- composing

_PRIVILEGES = frozenset(
    {"CONNECT", "TEMPORARY", "CREATE", "USAGE", "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE",
     "REFERENCES", "TRIGGER", "EXECUTE", "MAINTAIN"}
)
_ON = {DATABASE: "DATABASE", SCHEMA: "SCHEMA", TABLE: "TABLE", SEQUENCE: "SEQUENCE", FUNCTION: "ROUTINE"}
_DEFAULT_ON = {"tables": "TABLES", "sequences": "SEQUENCES", "functions": "ROUTINES"}
_TYPE_LIST = re.compile(r"^[A-Za-z0-9_ ,.\[\]()]*$")
"""Argument types of a routine as ``oidvectortypes`` prints them; anything
else (a quoted type name) is refused rather than put into SQL text."""


def _privs(change: Change) -> list[str]:
    privs = [p.strip().upper() for p in str(change.param("privileges") or "").split(",") if p.strip()]
    if not privs or not set(privs) <= _PRIVILEGES:
        raise ValueError(f"unknown privilege(s) in {change.param('privileges')!r}")
    return privs


def _qualified(obj: Obj) -> sql.Composable:
    if not obj.schema or not obj.name:
        raise ValueError(f"{obj.kind} needs a schema and a name")
    if obj.kind != FUNCTION:
        return sql.Composed([sql.Identifier(obj.schema), sql.SQL("."), sql.Identifier(obj.name)])
    name, sep, args = obj.name.partition("(")
    if not sep or not args.endswith(")") or not _TYPE_LIST.match(args[:-1]):
        raise ValueError(f"routine signature {obj.name!r} cannot be used safely; grant it by hand")
    return sql.Composed(
        [sql.Identifier(obj.schema), sql.SQL("."), sql.Identifier(name), sql.SQL("(" + args[:-1] + ")")]
    )


def privilege_statements(change: Change) -> tuple[sql.Composed, ...]:
    """The statement for a GRANT_PRIVILEGE or REVOKE_PRIVILEGE change."""
    grant = change.kind is ChangeKind.GRANT_PRIVILEGE
    obj = Obj.from_params(dict(change.params))
    role = sql.Identifier(change.role)
    privs = _privs(change)
    verb, prep = ("GRANT ", " TO ") if grant else ("REVOKE ", " FROM ")
    plist: sql.Composable
    target: sql.Composable
    if obj.kind == COLUMN:
        col = sql.Identifier(obj.column)
        plist = sql.SQL(", ").join(sql.Composed([sql.SQL(p + " ("), col, sql.SQL(")")]) for p in privs)
        table = _qualified(Obj(obj.database, TABLE, obj.schema, obj.name))
        target = sql.Composed([sql.SQL(" ON TABLE "), table])
    elif obj.kind == DEFAULT:
        on = _DEFAULT_ON.get(obj.name)
        if on is None or not obj.owner:
            raise ValueError(f"default privileges need an owner and tables/sequences/functions, got {obj}")
        head: list[sql.Composable] = [sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE "), sql.Identifier(obj.owner)]
        if obj.schema:
            head += [sql.SQL(" IN SCHEMA "), sql.Identifier(obj.schema)]
        body = [sql.SQL(" " + verb + ", ".join(privs) + " ON " + on + prep), role]
        return (sql.Composed([*head, *body]),)
    elif obj.kind in (DATABASE, SCHEMA):
        ident = sql.Identifier(obj.database if obj.kind == DATABASE else obj.schema)
        plist = sql.SQL(", ".join(privs))
        target = sql.Composed([sql.SQL(" ON " + _ON[obj.kind] + " "), ident])
    elif obj.kind in _ON:
        plist = sql.SQL(", ".join(privs))
        target = sql.Composed([sql.SQL(" ON " + _ON[obj.kind] + " "), _qualified(obj)])
    else:
        raise ValueError(f"unknown object type {obj.kind!r}")
    return (sql.Composed([sql.SQL(verb), plist, target, sql.SQL(prep), role]),)


def database_of(change: Change, home: str) -> str | None:
    """The database a privilege change must run in when it is not ``home``
    (the connected database); None for everything else."""
    db = change.param("database")
    if change.kind in (ChangeKind.GRANT_PRIVILEGE, ChangeKind.REVOKE_PRIVILEGE) and db and db != home:
        return str(db)
    return None
