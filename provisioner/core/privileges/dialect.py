"""The role catalog in a target's own object model.  Pure.

The catalog (``mappings/roles/*.toml``) is written in PostgreSQL's terms:
databases holding schemas holding tables, sequences and functions.  On
MariaDB a PostgreSQL **schema is a database** and the server is the one
PostgreSQL database (grants naming a ``database`` apply to PostgreSQL targets
that list it).  :func:`for_target` rewrites every grant statement into what
the target can express, grant by grant, and says why for every one it
changes or cannot keep:

* implied (info ``privilege_implied``): database ``CONNECT`` and schema
  ``USAGE`` -- MariaDB has neither privilege; any privilege on an object in a
  database lets the account use that database;
* translated (info ``privilege_translated``): sequence ``USAGE`` and ``UPDATE``
  become ``SELECT, INSERT`` (MariaDB's ``NEXTVAL`` needs both; ``INSERT`` also
  allows ``SETVAL``), schema ``CREATE`` becomes ``CREATE`` on ``db``.* (tables
  and sequences, not views or routines);
* inexpressible (error ``privilege_inexpressible``, the grant is not applied):
  database ``TEMPORARY`` and ``CREATE``, table ``TRUNCATE`` -- each only
  through a broader privilege (``*.*`` or ``DROP``).

Wildcards (``objects`` absent) keep their meaning "every object of the schema,
now and later": on MariaDB that is one grant on ``db``.* (see
:func:`provisioner.core.privileges.expansion.expand`), no default privileges.
"""

from __future__ import annotations

from dataclasses import replace

from provisioner.core.privileges.spec import PrivilegeCatalog, RoleModel
from provisioner.core.values.capabilities import Capabilities
from provisioner.core.values.grants import DATABASE, SCHEMA, SEQUENCE, TABLE, GrantSpec, sort_privileges
from provisioner.core.values.plan import Notice, NoticeLevel

IMPLIED_CODE = "privilege_implied"
TRANSLATED_CODE = "privilege_translated"
INEXPRESSIBLE_CODE = "privilege_inexpressible"

_IMPLIED = {
    (DATABASE, "CONNECT"): "MariaDB has no CONNECT privilege: every account may connect, and any privilege on an "
    "object in a database lets it use that database",
    (SCHEMA, "USAGE"): "MariaDB has no USAGE privilege on a database (a PostgreSQL schema): the privileges on its "
    "tables, sequences and routines alone decide access",
}
_INEXPRESSIBLE = {
    (DATABASE, "TEMPORARY"): "MariaDB grants CREATE TEMPORARY TABLES per database (one per catalog schema) or on "
    "*.* for the whole server; a PostgreSQL database is the whole server, so only the broader *.* grant could "
    "express it",
    (DATABASE, "CREATE"): "PostgreSQL's CREATE on a database creates schemas; on MariaDB that is CREATE on *.* "
    "(create any database, and tables in every database), far broader",
    (TABLE, "TRUNCATE"): "MariaDB's TRUNCATE TABLE needs the DROP privilege, which also drops the table",
}
_TRANSLATED = {
    (SEQUENCE, "USAGE"): (
        ("SELECT", "INSERT"),
        "MariaDB's NEXTVAL needs SELECT and INSERT on the sequence; INSERT also allows SETVAL, which PostgreSQL "
        "gives only with UPDATE",
    ),
    (SCHEMA, "CREATE"): (
        ("CREATE",),
        "CREATE on the database creates tables and sequences; views and routines need CREATE VIEW and CREATE "
        "ROUTINE, which the catalog cannot name",
    ),
    (SEQUENCE, "UPDATE"): (
        ("SELECT", "INSERT"),
        "MariaDB's NEXTVAL needs SELECT and INSERT on the sequence (SETVAL needs INSERT); SELECT also lets it "
        "read the sequence",
    ),
}


def for_target(catalog: PrivilegeCatalog, capabilities: Capabilities) -> tuple[PrivilegeCatalog, tuple[Notice, ...]]:
    """``catalog`` as ``capabilities.dialect`` can express it, and a notice for every grant
    changed or dropped (each naming file, role and grant).  PostgreSQL: unchanged."""
    if capabilities.dialect != "mariadb" or not capabilities.object_privileges:
        return catalog, ()
    notices: list[Notice] = []
    roles: dict[str, RoleModel] = {}
    for name, model in catalog.roles.items():
        specs = []
        for spec in model.grants:
            kept = _translate(spec, notices)
            if kept is not None:
                specs.append(kept)
        roles[name] = replace(model, grants=tuple(specs))
    return PrivilegeCatalog(roles), tuple(notices)


def _translate(spec: GrantSpec, notices: list[Notice]) -> GrantSpec | None:
    out: list[str] = []
    for priv in spec.privileges:
        key = (spec.kind, priv)
        where = f"{spec.where}: {priv} on {_what(spec)}"
        if key in _IMPLIED:
            notices.append(
                Notice(NoticeLevel.INFO, IMPLIED_CODE, f"{where} needs no grant on MariaDB: {_IMPLIED[key]}", spec.role)
            )
        elif key in _INEXPRESSIBLE:
            notices.append(
                Notice(
                    NoticeLevel.ERROR,
                    INEXPRESSIBLE_CODE,
                    f"{where} cannot be expressed on MariaDB and is not granted: {_INEXPRESSIBLE[key]}; remove it "
                    "from the catalog or grant it by hand",
                    spec.role,
                )
            )
        elif key in _TRANSLATED:
            privs, why = _TRANSLATED[key]
            out += privs
            notices.append(
                Notice(
                    NoticeLevel.INFO,
                    TRANSLATED_CODE,
                    f"{where} is granted as {', '.join(privs)} on MariaDB: {why}",
                    spec.role,
                )
            )
        else:
            out.append(priv)
    if not out:
        return None
    return replace(spec, privileges=sort_privileges(tuple(out)))


def _what(spec: GrantSpec) -> str:
    if spec.kind == DATABASE:
        return "database"
    if spec.kind == SCHEMA:
        return f"schema {spec.schema}"
    if spec.objects is None:
        return f"all {spec.kind}s in schema {spec.schema}"
    return f"{spec.kind} " + ", ".join(f"{spec.schema}.{o}" for o in spec.objects)
