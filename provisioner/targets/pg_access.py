"""One object's complete access control list on PostgreSQL (``provisioner access``).

Unlike the inspector (:mod:`provisioner.targets.pg_privileges`), which reads
the managed roles' and PUBLIC's grants on everything, this reads *every*
grantee of one object: the owner's implicit privileges and PostgreSQL's
built-in defaults (``acldefault`` while the ACL is NULL) included, and the
column-level grants of a table.  The object is found by name: ``schema.name``
(a table, view or sequence, else every overload of a function, or one
signature ``schema.name(argtypes)``), or a schema, else a database.  Names are
bound as parameters, never put into SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from provisioner.core.privileges.access import AclEntry, ObjectAcl
from provisioner.core.values.grants import DATABASE, FUNCTION, PUBLIC, SCHEMA, SEQUENCE, TABLE, Obj

Query = Callable[[str, Mapping[str, Any]], list[Any]]

_GRANTEE = f"coalesce(r.rolname::text, '{PUBLIC}'), a.privilege_type"
_ROLE = "LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee"

RELATION_QUERY = f"""
SELECT c.relkind = 'S', pg_catalog.pg_get_userbyid(c.relowner)::text, {_GRANTEE}
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault(
       CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
  {_ROLE}
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
"""

COLUMNS_QUERY = f"""
SELECT att.attname::text, {_GRANTEE}
  FROM pg_catalog.pg_attribute att
  JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL pg_catalog.aclexplode(att.attacl) a
  {_ROLE}
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND att.attnum > 0 AND NOT att.attisdropped
"""

FUNCTION_QUERY = f"""
SELECT p.proname::text || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')',
       pg_catalog.pg_get_userbyid(p.proowner)::text, {_GRANTEE}
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
  {_ROLE}
 WHERE n.nspname = %(schema)s AND p.prokind IN ('f', 'p')
   AND (p.proname = %(name)s OR p.proname::text || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')' = %(name)s)
"""

SCHEMA_QUERY = f"""
SELECT pg_catalog.pg_get_userbyid(n.nspowner)::text, {_GRANTEE}
  FROM pg_catalog.pg_namespace n
  CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
  {_ROLE}
 WHERE n.nspname = %(name)s
"""

DATABASE_QUERY = f"""
SELECT pg_catalog.pg_get_userbyid(d.datdba)::text, {_GRANTEE}
  FROM pg_catalog.pg_database d
  CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
  {_ROLE}
 WHERE d.datname = %(name)s
"""


def read_object_acl(query: Query, text: str, database: str) -> list[ObjectAcl]:
    """The ACL(s) of the object ``text`` names in ``database`` (the one ``query``
    runs in); empty when nothing of that name exists."""
    schema, dot, name = text.partition(".")
    if dot:
        params = {"schema": schema, "name": name}
        rows = query(RELATION_QUERY, params)
        if rows:
            kind = SEQUENCE if rows[0][0] else TABLE
            entries = [AclEntry(g, p) for _, _, g, p in rows]
            if kind == TABLE:
                entries += [AclEntry(g, p, col) for col, g, p in query(COLUMNS_QUERY, params)]
            return [ObjectAcl(Obj(database, kind, schema, name), rows[0][1], tuple(entries))]
        by_signature: dict[str, tuple[str, list[AclEntry]]] = {}
        for signature, owner, g, p in query(FUNCTION_QUERY, params):
            by_signature.setdefault(signature, (owner, []))[1].append(AclEntry(g, p))
        return [
            ObjectAcl(Obj(database, FUNCTION, schema, sig), owner, tuple(entries))
            for sig, (owner, entries) in sorted(by_signature.items())
        ]
    rows = query(SCHEMA_QUERY, {"name": text})
    if rows:
        return [ObjectAcl(Obj(database, SCHEMA, text), rows[0][0], tuple(AclEntry(g, p) for _, g, p in rows))]
    rows = query(DATABASE_QUERY, {"name": text})
    if rows:
        return [ObjectAcl(Obj(text, DATABASE), rows[0][0], tuple(AclEntry(g, p) for _, g, p in rows))]
    return []


