"""Expanding catalog grant statements against a database's objects.  Pure."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.core.values.grants import (
    COLUMN,
    DATABASE,
    DEFAULT,
    FUNCTION,
    SCHEMA,
    SEQUENCE,
    GrantSpec,
    Inventory,
    Obj,
)


@dataclass(frozen=True, slots=True)
class Expansion:
    """The concrete objects of one grant statement in one database."""

    objects: tuple[Obj, ...]
    missing: tuple[str, ...]
    """Named objects that do not exist (yet)."""


def expand(spec: GrantSpec, inv: Inventory, default_owners: tuple[str, ...] = ()) -> Expansion:
    """Expand ``spec`` against the objects of ``inv``.  A wildcard also yields
    the default privileges for the objects ``default_owners`` (default: the
    schema's owner) create later; where ``inv.database_level`` (MariaDB), a wildcard
    is the one object ``name = "*"`` (``GRANT ... ON db.*`` covers later objects too)."""
    db = inv.database
    if spec.kind == DATABASE:
        return Expansion((Obj(db, DATABASE),), ())
    if spec.schema not in inv.schemas:
        return Expansion((), (f"schema {spec.schema}",))
    if spec.kind == SCHEMA:
        return Expansion((Obj(db, SCHEMA, spec.schema),), ())
    if spec.kind == COLUMN:
        return _expand_columns(spec, inv)
    existing = inv.objects(spec.kind, spec.schema)
    if spec.objects is None and inv.database_level and spec.kind != SEQUENCE:
        return Expansion((Obj(db, spec.kind, spec.schema, "*"),), ())
    if spec.objects is None and inv.database_level:  # db.* would cover every table too: one grant per sequence
        return Expansion(tuple(Obj(db, SEQUENCE, spec.schema, n) for n in existing), ())
    if spec.objects is None:
        owners = default_owners or (inv.schemas[spec.schema],)
        found = [Obj(db, spec.kind, spec.schema, name) for name in existing]
        found += [Obj(db, DEFAULT, spec.schema, f"{spec.kind}s", owner=o) for o in owners if o]
        return Expansion(tuple(found), ())
    objs: list[Obj] = []
    missing: list[str] = []
    for name in spec.objects:
        hits = _match(spec.kind, name, existing)
        objs += [Obj(db, spec.kind, spec.schema, h) for h in hits]
        if not hits:
            missing.append(f"{spec.kind} {spec.schema}.{name}")
    return Expansion(tuple(objs), tuple(missing))


def _match(kind: str, name: str, existing: tuple[str, ...]) -> list[str]:
    if kind != FUNCTION:
        return [name] if name in existing else []
    if "(" in name:  # an exact signature
        want = name.replace(" ", "")
        return [s for s in existing if s.replace(" ", "") == want]
    return [s for s in existing if s.split("(", 1)[0] == name]  # every overload


def _expand_columns(spec: GrantSpec, inv: Inventory) -> Expansion:
    objs: list[Obj] = []
    missing: list[str] = []
    for table in spec.objects or ():
        cols = inv.columns.get((spec.schema, table))
        if cols is None:
            missing.append(f"table {spec.schema}.{table}")
            continue
        for col in spec.columns:
            if col in cols:
                objs.append(Obj(inv.database, COLUMN, spec.schema, table, col))
            else:
                missing.append(f"column {spec.schema}.{table}({col})")
    return Expansion(tuple(objs), tuple(missing))


def symbolic(spec: GrantSpec, database: str) -> tuple[Obj, ...]:
    """``spec``'s objects without an inventory (``name = "*"`` for wildcards)."""
    if spec.kind == DATABASE:
        return (Obj(database, DATABASE),)
    if spec.kind == SCHEMA:
        return (Obj(database, SCHEMA, spec.schema),)
    if spec.kind == COLUMN:
        return tuple(Obj(database, COLUMN, spec.schema, t, c) for t in spec.objects or () for c in spec.columns)
    return tuple(Obj(database, spec.kind, spec.schema, n) for n in spec.objects or ("*",))
