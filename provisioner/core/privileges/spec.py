"""The privilege model of the role catalog.  Pure.

Each ``[role.NAME]`` of ``mappings/roles/*.toml`` may say what the business
role may do (``[[role.NAME.grants]]``), which other catalog roles it includes
(``inherits``) and what happens to privileges found that the catalog does not
list (``extras = "report" | "revoke"``).  See ``docs/privileges.md``.

:func:`build_privilege_catalog` validates every role at once;
:func:`expand` turns one grant statement into concrete objects of an
inventory (:mod:`provisioner.core.privileges.expansion`); :func:`effective_privileges`
answers "what may these roles do, and why" including inherited roles -- the
function segregation-of-duties checks build on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from provisioner.core.privileges.catalog import Catalog
from provisioner.core.privileges.expansion import Expansion, expand, symbolic
from provisioner.core.values.grants import (
    COLUMN,
    DATABASE,
    DEFAULT,
    FUNCTION,
    SCHEMA,
    SEQUENCE,
    TABLE,
    GrantSpec,
    Obj,
    PrivilegeSnapshot,
)

__all__ = ["Expansion", "GrantSpec", "expand", "symbolic"]

EXTRA_KEYS = frozenset({"inherits", "extras", "grants"})
"""Catalog keys this module reads (registered with the catalog parser)."""

GRANT_KEYS = frozenset({"database", "on", "schema", "objects", "columns", "privileges"})

ON_KINDS: Mapping[str, str] = {
    "database": DATABASE,
    "schema": SCHEMA,
    "tables": TABLE,
    "columns": COLUMN,
    "sequences": SEQUENCE,
    "functions": FUNCTION,
}

VALID: Mapping[str, frozenset[str]] = {
    DATABASE: frozenset({"CONNECT", "TEMPORARY", "CREATE"}),
    SCHEMA: frozenset({"USAGE", "CREATE"}),
    TABLE: frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}),
    COLUMN: frozenset({"SELECT", "INSERT", "UPDATE", "REFERENCES"}),
    SEQUENCE: frozenset({"USAGE", "SELECT", "UPDATE"}),
    FUNCTION: frozenset({"EXECUTE"}),
}
ALIASES = {"TEMP": "TEMPORARY"}
Extras = Literal["report", "revoke"]


@dataclass(frozen=True, slots=True)
class RoleModel:
    name: str
    file: str
    inherits: tuple[str, ...] = ()
    extras: Extras = "report"
    grants: tuple[GrantSpec, ...] = ()
    manages_privileges: bool = False
    """True when the role declares ``grants`` or ``extras``: its privileges are
    owned by the catalog (an empty list means "none")."""


@dataclass(frozen=True, slots=True)
class PrivilegeCatalog:
    roles: Mapping[str, RoleModel]

    def paths(self, role: str) -> dict[str, tuple[str, ...]]:
        """Every catalog role ``role`` includes (itself first), each with the
        shortest inheritance path from ``role`` to it."""
        out: dict[str, tuple[str, ...]] = {role: (role,)}
        queue = [role]
        while queue:
            current = queue.pop(0)
            model = self.roles.get(current)
            for parent in model.inherits if model else ():
                if parent not in out:
                    out[parent] = (*out[current], parent)
                    queue.append(parent)
        return out

    @property
    def has_privileges(self) -> bool:
        return bool(self.roles)


EMPTY = PrivilegeCatalog({})


# --------------------------------------------------------------------------- parsing


def build_privilege_catalog(catalog: Catalog) -> tuple[PrivilegeCatalog, list[str]]:
    """The privilege model of every catalog role that declares one, and every
    problem found (file and role named), cycles with their full path."""
    roles: dict[str, RoleModel] = {}
    problems: list[str] = []
    for name in sorted(catalog.roles):
        entry = catalog.roles[name]
        if not set(entry.extra) & EXTRA_KEYS:
            continue
        model, probs = _parse_model(name, entry.file, entry.extra)
        problems += probs
        roles[name] = model
    for model in roles.values():
        for parent in model.inherits:
            if parent not in catalog.roles:
                problems.append(
                    f"{model.file}: [role.{model.name}]: inherits unknown catalog role {parent!r}"
                )
    problems += [f"{roles[c[0]].file}: inheritance cycle: {' -> '.join(c)}" for c in find_cycles(roles)]
    # roles only inherited (no keys of their own) still take part as group roles
    for model in list(roles.values()):
        for parent in model.inherits:
            if parent not in roles and parent in catalog.roles:
                roles[parent] = RoleModel(parent, catalog.roles[parent].file)
    return PrivilegeCatalog(roles), problems


def _parse_model(name: str, file: str, body: Mapping[str, Any]) -> tuple[RoleModel, list[str]]:
    where = f"{file}: [role.{name}]"
    problems: list[str] = []
    inherits = body.get("inherits", [])
    if not isinstance(inherits, list) or not all(isinstance(i, str) and i for i in inherits):
        problems.append(f"{where}: 'inherits' must be a list of catalog role names")
        inherits = []
    extras = body.get("extras", "report")
    if extras not in ("report", "revoke"):
        problems.append(f"{where}: extras {extras!r} is not one of 'report', 'revoke'")
        extras = "report"
    raw = body.get("grants", [])
    if not isinstance(raw, list):
        problems.append(f"{where}: 'grants' must be an array of tables ([[role.{name}.grants]])")
        raw = []
    specs = []
    for i, item in enumerate(raw):
        spec, probs = _parse_grant(name, file, i, item)
        problems += probs
        if spec is not None:
            specs.append(spec)
    manages = "grants" in body or "extras" in body
    return RoleModel(name, file, tuple(dict.fromkeys(inherits)), extras, tuple(specs), manages), problems


def _names(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(v.strip() for v in value)
    return None


def _parse_grant(role: str, file: str, index: int, item: Any) -> tuple[GrantSpec | None, list[str]]:
    where = f"{file}: [role.{role}] grants[{index}]"
    if not isinstance(item, dict):
        return None, [f"{where}: must be a table"]
    problems = []
    unknown = set(item) - GRANT_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(GRANT_KEYS)}")
    on = item.get("on")
    kind = ON_KINDS.get(on) if isinstance(on, str) else None
    if kind is None or not isinstance(on, str):
        return None, [*problems, f"{where}: 'on' must be one of {', '.join(ON_KINDS)} (got {on!r})"]
    database = item.get("database")
    if database is not None and (not isinstance(database, str) or not database):
        problems.append(f"{where}: 'database' must be a database name")
    schema = item.get("schema", "")
    if kind == DATABASE:
        for key in ("schema", "objects", "columns"):
            if key in item:
                problems.append(f"{where}: {key!r} does not apply to on = \"database\"")
    elif not isinstance(schema, str) or not schema.strip():
        problems.append(f"{where}: 'schema' is required for on = {on!r}")
    objects: tuple[str, ...] | None = None
    if "objects" in item:
        objects = _names(item["objects"])
        if objects is None:
            problems.append(f"{where}: 'objects' must be a non-empty list of names")
        elif "*" in objects:
            if len(objects) > 1:
                problems.append(f"{where}: 'objects' mixes \"*\" with names")
            objects = None
        if kind == SCHEMA:
            problems.append(f"{where}: 'objects' does not apply to on = \"schema\"")
    columns: tuple[str, ...] = ()
    if kind == COLUMN:
        if objects is None:
            problems.append(f"{where}: on = \"columns\" needs 'objects' (the tables, no \"*\")")
        cols = _names(item.get("columns"))
        if cols is None:
            problems.append(f"{where}: on = \"columns\" needs 'columns', a non-empty list")
        columns = cols or ()
    elif "columns" in item:
        problems.append(f"{where}: 'columns' applies only to on = \"columns\"")
    privileges, probs = _privileges(item.get("privileges"), kind, on, where)
    problems += probs
    if problems:
        return None, problems
    return GrantSpec(role, file, index, kind, privileges, database, str(schema).strip(), objects, columns), []


def _privileges(value: Any, kind: str, on: str, where: str) -> tuple[tuple[str, ...], list[str]]:
    names = _names(value)
    if names is None:
        return (), [f"{where}: 'privileges' must be a non-empty list"]
    out, problems = [], []
    for raw in names:
        priv = ALIASES.get(raw.upper(), raw.upper())
        if priv not in VALID[kind]:
            problems.append(
                f"{where}: privilege {raw!r} is not valid on {on} (valid: {', '.join(sorted(VALID[kind]))})"
            )
        elif priv not in out:
            out.append(priv)
    return tuple(out), problems


def find_cycles(roles: Mapping[str, RoleModel]) -> list[tuple[str, ...]]:
    """Every inheritance cycle once, as a path that ends where it starts,
    rotated to start at its smallest name: ``(a, b, c, a)``."""
    seen: set[tuple[str, ...]] = set()
    out: list[tuple[str, ...]] = []
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node) :]
            start = cycle.index(min(cycle))
            rotated = tuple(cycle[start:] + cycle[:start])
            if rotated not in seen:
                seen.add(rotated)
                out.append((*rotated, rotated[0]))
            return
        if node in done or node not in roles:
            return
        stack.append(node)
        for parent in roles[node].inherits:
            visit(parent, stack)
        stack.pop()
        done.add(node)

    for name in sorted(roles):
        visit(name, [])
    return out


# --------------------------------------------------------------------------- effective privileges


@dataclass(frozen=True, slots=True)
class EffectivePrivilege:
    """``privilege`` on ``obj``, held through the inheritance ``path`` (from
    the role asked about to the role whose catalog entry grants it)."""

    privilege: str
    obj: Obj
    path: tuple[str, ...]
    spec: GrantSpec

    def because(self) -> str:
        """```trade_executor`, which includes `trade_reader`, which grants SELECT on ...``"""
        chain = ", which includes ".join(f"`{r}`" for r in self.path)
        return f"{chain}, which grants {self.spec.what()} ({self.spec.file})"


def effective_privileges(
    catalog: PrivilegeCatalog,
    roles: Iterable[str],
    snapshot: PrivilegeSnapshot | None = None,
    default_database: str = "",
) -> tuple[EffectivePrivilege, ...]:
    """Every privilege ``roles`` hold by the catalog, inherited ones included.

    With a ``snapshot`` grants are expanded to the objects that exist (named
    objects that do not exist are left out); without one, wildcards stay
    symbolic (``Obj.name == "*"``; see :func:`covers`)."""
    out: dict[tuple[str, Obj], EffectivePrivilege] = {}
    default_db = snapshot.default_database if snapshot else default_database
    for start in sorted(set(roles)):
        for role, path in sorted(catalog.paths(start).items(), key=lambda kv: (len(kv[1]), kv[0])):
            model = catalog.roles.get(role)
            for spec in model.grants if model else ():
                db = spec.database or default_db
                if snapshot is None:
                    objs = symbolic(spec, db)
                elif db in snapshot.databases:
                    objs = expand(spec, snapshot.databases[db]).objects
                else:
                    objs = ()
                for obj in objs:
                    if obj.kind == DEFAULT:
                        continue
                    for priv in spec.privileges:
                        out.setdefault((priv, obj), EffectivePrivilege(priv, obj, path, spec))
    return tuple(sorted(out.values(), key=lambda e: (e.obj, e.privilege)))


def covers(
    effective: Iterable[EffectivePrivilege], privilege: str, kind: str, schema: str, name: str, database: str = ""
) -> list[EffectivePrivilege]:
    """The effective privileges that allow ``privilege`` on one object
    (``covers(eff, "INSERT", "table", "trading", "orders")``), symbolic
    wildcards included; an empty ``database`` matches any."""
    return [
        e
        for e in effective
        if e.privilege == privilege.upper()
        and e.obj.kind == kind
        and e.obj.schema == schema
        and e.obj.name in (name, "*")
        and (not database or e.obj.database == database)
    ]
