"""Privilege values: securable objects, grants, and what a target holds.

Pure frozen values shared by the privilege model (:mod:`provisioner.core.privileges.spec`),
the privilege diff (:mod:`provisioner.core.privileges.diff`), the actual state and the
PostgreSQL adapter.  Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATABASE = "database"
SCHEMA = "schema"
TABLE = "table"
COLUMN = "column"
SEQUENCE = "sequence"
FUNCTION = "function"
DEFAULT = "default"
"""Default privileges (``ALTER DEFAULT PRIVILEGES``); ``Obj.name`` is then
``tables``, ``sequences`` or ``functions`` and ``Obj.owner`` the creating role."""

PUBLIC = "public"
"""The grantee name of privileges granted to PUBLIC (every role).  PostgreSQL
reserves the name, so no real role can collide with it."""

OBJECT_KINDS = (DATABASE, SCHEMA, TABLE, COLUMN, SEQUENCE, FUNCTION, DEFAULT)

PRIVILEGE_ORDER = (
    "CONNECT",
    "TEMPORARY",
    "CREATE",
    "USAGE",
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "EXECUTE",
)


def sort_privileges(privileges: set[str] | frozenset[str] | tuple[str, ...]) -> tuple[str, ...]:
    rank = {p: i for i, p in enumerate(PRIVILEGE_ORDER)}
    return tuple(sorted(set(privileges), key=lambda p: (rank.get(p, len(rank)), p)))


@dataclass(frozen=True, slots=True, order=True)
class Obj:
    """One securable object in one database of a cluster."""

    database: str
    kind: str
    schema: str = ""
    name: str = ""
    """Table, sequence or view name; a function's signature ``name(argtypes)``;
    for ``default``: ``tables``, ``sequences`` or ``functions``; ``*`` = every
    object of the kind in the schema (unexpanded)."""
    column: str = ""
    owner: str = ""
    """``default`` only: the role whose future objects are covered."""

    def label(self) -> str:
        """``table trading.orders`` (without the database)."""
        if self.kind == DATABASE:
            return f"database {self.database}" if self.database else "every database (*.*)"
        if self.kind == SCHEMA:
            return f"schema {self.schema}"
        if self.kind == COLUMN:
            return f"column {self.schema}.{self.name}({self.column})"
        if self.kind == DEFAULT:
            where = f" in schema {self.schema}" if self.schema else ""
            return f"future {self.name} of {self.owner}{where}"
        if self.name == "*":
            return f"all {self.kind}s in schema {self.schema}"
        return f"{self.kind} {self.schema}.{self.name}"

    def describe(self) -> str:
        """The label, with the database unless the object is the database."""
        if self.kind == DATABASE or not self.database:  # MariaDB: the server is the one database
            return self.label()
        return f"{self.label()} in database {self.database}"

    def to_params(self) -> dict[str, str]:
        return {
            "database": self.database,
            "object_type": self.kind,
            "schema": self.schema,
            "name": self.name,
            "column": self.column,
            "owner": self.owner,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Obj:
        return cls(
            str(params.get("database") or ""),
            str(params.get("object_type") or ""),
            str(params.get("schema") or ""),
            str(params.get("name") or ""),
            str(params.get("column") or ""),
            str(params.get("owner") or ""),
        )


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """``role`` holds ``privilege`` on ``obj``."""

    role: str
    obj: Obj
    privilege: str

    def key(self) -> tuple[str, ...]:
        o = self.obj
        return (self.role, o.database, o.kind, o.schema, o.name, o.column, o.owner, self.privilege)


@dataclass(frozen=True, slots=True)
class Inventory:
    """The objects of one database that grants may name (system schemas excluded)."""

    database: str
    owner: str = ""
    schemas: Mapping[str, str] = field(default_factory=dict)
    """schema -> owner."""
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """schema -> tables, views, materialized views, foreign and partitioned tables."""
    sequences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    functions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """schema -> signatures ``name(argtypes)``."""
    columns: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """(schema, table) -> column names."""
    database_level: bool = False
    """A wildcard is one grant on every object of the schema, now and later (MariaDB: on
    ``db``.*, where a PostgreSQL schema is a database), instead of a grant per object plus
    default privileges."""
    ungrantable: Mapping[Obj, frozenset[str]] = field(default_factory=dict)
    """Object -> the privileges the provisioner's own role cannot grant on it (it holds no
    grant option and does not have the owner's privileges); objects it can grant on
    are absent, and so is a column without an ACL of its own (its table decides).  Read
    only by targets that can tell (PostgreSQL)."""

    def cannot_grant(self, obj: Obj, privilege: str) -> bool:
        if obj.kind == COLUMN and obj not in self.ungrantable:
            obj = Obj(obj.database, TABLE, obj.schema, obj.name)
        return privilege in self.ungrantable.get(obj, ())

    def objects(self, kind: str, schema: str) -> tuple[str, ...]:
        source = {TABLE: self.tables, SEQUENCE: self.sequences, FUNCTION: self.functions}[kind]
        return source.get(schema, ())


@dataclass(frozen=True, slots=True)
class PrivilegeSnapshot:
    """Privileges of managed roles and the object inventory, per database."""

    default_database: str
    databases: Mapping[str, Inventory]
    grants: frozenset[Grant] = frozenset()

    def of(self, role: str) -> set[Grant]:
        return {g for g in self.grants if g.role == role}

    def payload(self) -> dict[str, Any]:
        """What a saved plan's fingerprint covers: every grant (a hand-made
        GRANT makes the plan stale), not the inventory."""
        return {
            "default_database": self.default_database,
            "databases": sorted(self.databases),
            "grants": [list(g.key()) for g in sorted(self.grants, key=Grant.key)],
        }


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """One ``[[role.NAME.grants]]`` entry."""

    role: str
    file: str
    index: int
    kind: str
    """``database``, ``schema``, ``table``, ``column``, ``sequence`` or ``function``."""
    privileges: tuple[str, ...]
    database: str | None = None
    """``None``: the target's default database."""
    schema: str = ""
    objects: tuple[str, ...] | None = None
    """``None``: every object of the kind in the schema, now and later."""
    columns: tuple[str, ...] = ()

    @property
    def wildcard(self) -> bool:
        return self.kind in (TABLE, SEQUENCE, FUNCTION) and self.objects is None

    @property
    def where(self) -> str:
        return f"{self.file} [role.{self.role}] grants[{self.index}]"

    def what(self) -> str:
        """``INSERT, SELECT on all tables in schema trading``."""
        privs = ", ".join(self.privileges)
        db = f" of database {self.database}" if self.database and self.kind != DATABASE else ""
        if self.kind == DATABASE:
            return f"{privs} on database {self.database or '(default)'}"
        if self.kind == SCHEMA:
            return f"{privs} on schema {self.schema}{db}"
        if self.kind == COLUMN:
            cols = ", ".join(self.columns)
            tables = ", ".join(f"{self.schema}.{o}" for o in self.objects or ())
            return f"{privs} ({cols}) on {tables}{db}"
        if self.objects is None:
            return f"{privs} on all {self.kind}s in schema {self.schema}{db}"
        names = ", ".join(f"{self.schema}.{o}" for o in self.objects)
        return f"{privs} on {self.kind} {names}{db}"
