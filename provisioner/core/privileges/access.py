"""Who can use an object, and every path by which they can.  Pure.

The question an examiner asks first: "who can UPDATE trading.approvals?"  The
input is the object's complete access control list as the target reports it
(every grantee, PUBLIC and the owner's implicit privileges included), the
role graph of the cluster (:class:`~provisioner.core.values.model.ActualState`), the
desired state (which rule gives which membership) and the role catalog (which
grant and which ``inherits`` the catalog declares).  Each path runs from a
role, through memberships, to the grant::

    hmorrow --rule `trade-approvers`--> trade_approver --catalog grant--> UPDATE (status, ...)
    bkaczmarek --hand grant--> UPDATE

Every step says what put it there: a rule, the catalog, or a hand grant (a
membership or privilege that neither rules nor catalog give).  Superusers,
the owner and PostgreSQL's predefined ``pg_read_all_data`` /
``pg_write_all_data`` roles are paths too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import Any

from provisioner.core.privileges.diff import desired_grants
from provisioner.core.privileges.spec import PrivilegeCatalog
from provisioner.core.values.grants import COLUMN, PUBLIC, SCHEMA, TABLE, Grant, Obj, sort_privileges
from provisioner.core.values.model import ActualState, DesiredState, RoleKind

MAX_PATHS = 64
"""Most paths listed per role and privilege (a membership graph can have many)."""

PREDEFINED: Mapping[str, Mapping[str, frozenset[str]]] = {
    "pg_read_all_data": {TABLE: frozenset({"SELECT"}), SCHEMA: frozenset({"USAGE"})},
    "pg_write_all_data": {TABLE: frozenset({"INSERT", "UPDATE", "DELETE"}), SCHEMA: frozenset({"USAGE"})},
}
"""PostgreSQL 14+ predefined roles that hold privileges on every table, outside any ACL."""


class StepKind(StrEnum):
    RULE = "rule"
    """A membership a rule gives (the desired state)."""
    CATALOG_INHERITS = "catalog_inherits"
    HAND_MEMBERSHIP = "hand_membership"
    """A membership neither a rule nor the catalog gives."""
    CATALOG_GRANT = "catalog_grant"
    HAND_GRANT = "hand_grant"
    """A privilege the catalog does not give."""
    OWNER = "owner"
    PUBLIC = "public"
    SUPERUSER = "superuser"
    PREDEFINED = "predefined"


HAND = frozenset({StepKind.HAND_MEMBERSHIP, StepKind.HAND_GRANT})


@dataclass(frozen=True, slots=True)
class AclEntry:
    """``grantee`` holds ``privilege`` on the object (on ``column`` only, when set)."""

    grantee: str
    privilege: str
    column: str = ""


@dataclass(frozen=True, slots=True)
class ObjectAcl:
    """One object's complete ACL as read from the target."""

    obj: Obj
    owner: str
    entries: tuple[AclEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    text: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "text": self.text}


@dataclass(frozen=True, slots=True)
class AccessPath:
    """``role`` can use ``privilege`` on the object (on ``columns`` only, when set) through ``steps``."""

    role: str
    login: bool
    person: str | None
    """The identity (username) behind a managed login role."""
    privilege: str
    columns: tuple[str, ...]
    chain: tuple[str, ...]
    """Roles from ``role`` to the grantee, both included."""
    steps: tuple[Step, ...]

    @property
    def hand(self) -> bool:
        """Some step of the path is a hand grant or hand-granted membership."""
        return any(s.kind in HAND for s in self.steps)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(s.kind.value for s in self.steps)

    def describe(self) -> str:
        return " -> ".join(s.text for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "login": self.login,
            "person": self.person,
            "privilege": self.privilege,
            "columns": list(self.columns),
            "chain": list(self.chain),
            "hand_grant": self.hand,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True, slots=True)
class Access:
    """The answer for one object on one target."""

    target: str
    obj: Obj
    owner: str
    paths: tuple[AccessPath, ...] = ()
    public: tuple[str, ...] = ()
    """Privileges PUBLIC holds: every role of the cluster has them."""
    notes: tuple[str, ...] = field(default=())

    def privileges(self) -> tuple[str, ...]:
        return sort_privileges({p.privilege for p in self.paths} | set(self.public))

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "object": self.obj.describe(),
            "object_type": self.obj.kind,
            "owner": self.owner,
            "public": list(self.public),
            "paths": [p.to_json() for p in self.paths],
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class _Grantee:
    privilege: str
    columns: tuple[str, ...]
    step: Step


def who_can(
    acl: ObjectAcl,
    actual: ActualState,
    desired: DesiredState,
    catalog: PrivilegeCatalog,
    default_owners: tuple[str, ...] = (),
    privilege: str | None = None,
) -> Access:
    """Every role that can use ``acl.obj`` (only ``privilege`` when given), with every path."""
    wanted = privilege.upper() if privilege else None
    catalog_grants = _catalog_grants(catalog, actual, default_owners)
    grantees: dict[str, list[_Grantee]] = {}
    public: set[str] = set()
    by_grant: dict[tuple[str, str], list[str]] = {}
    for e in acl.entries:
        if wanted is None or e.privilege == wanted:
            by_grant.setdefault((e.grantee, e.privilege), []).append(e.column)
    for (grantee, priv), cols in sorted(by_grant.items()):
        if grantee == PUBLIC:
            public.add(priv)
            continue
        columns = tuple(sorted(c for c in cols if c)) if all(cols) else ()
        step = _grant_step(acl, grantee, priv, columns, catalog_grants)
        grantees.setdefault(grantee, []).append(_Grantee(priv, columns, step))
    postgresql = actual.capabilities.dialect == "postgresql"  # MariaDB: global grants are ACL entries (*.*)
    for name, table in PREDEFINED.items() if postgresql else ():
        for priv in sorted(table.get(acl.obj.kind, frozenset())):
            if wanted is None or priv == wanted:
                step = Step(StepKind.PREDEFINED, f"predefined role {name} holds {priv} on every {acl.obj.kind}")
                grantees.setdefault(name, []).append(_Grantee(priv, (), step))
    members = _members(actual)
    paths: list[AccessPath] = []
    for grantee, grants in sorted(grantees.items()):
        for chain in _chains(grantee, members):
            steps = tuple(
                membership_step(member, group, actual, desired, catalog) for member, group in pairwise(chain)
            )
            for g in grants:
                paths.append(_path(chain, (*steps, g.step), g, actual, desired))
    every = {e.privilege for e in acl.entries} | (_predefined_privs(acl.obj.kind) if postgresql else set())
    privs = [wanted] if wanted else sort_privileges(every)
    for name, role in sorted(actual.roles.items()) if postgresql else ():
        if role.superuser:
            step = Step(StepKind.SUPERUSER, f"{name} is a superuser: bypasses every privilege check")
            paths += [_path((name,), (step,), _Grantee(p, (), step), actual, desired) for p in privs]
    notes: tuple[str, ...] = ()
    if actual.privileges is None:
        notes = ("privileges are not managed on this target: no grant can be attributed to the catalog",)
    ordered = tuple(sorted(paths, key=_order))
    return Access(actual.target, acl.obj, acl.owner, ordered, sort_privileges(public), notes)


def _order(p: AccessPath) -> tuple[Any, ...]:
    return (p.privilege, not p.login, p.role, p.chain, p.kinds)


def _predefined_privs(kind: str) -> set[str]:
    return {p for table in PREDEFINED.values() for p in table.get(kind, frozenset())}


def _path(
    chain: tuple[str, ...], steps: tuple[Step, ...], g: _Grantee, actual: ActualState, desired: DesiredState
) -> AccessPath:
    role = chain[0]
    found = actual.roles.get(role)
    login = bool(found and found.login)
    person = None
    if found is not None and found.marker is not None and found.marker.kind is RoleKind.USER:
        user = desired.users.get(role)
        person = user.username if user is not None else found.marker.stable_id
    return AccessPath(role, login, person, g.privilege, g.columns, chain, steps)


def _members(actual: ActualState) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, role in actual.roles.items():
        for group in role.member_of:
            out.setdefault(group, []).append(name)
    return {k: sorted(v) for k, v in out.items()}


def _chains(grantee: str, members: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    """Every simple membership chain ending at ``grantee`` (``(grantee,)`` included),
    at most :data:`MAX_PATHS` per starting role."""
    out: list[tuple[str, ...]] = []
    per_role: dict[str, int] = {}
    stack: list[tuple[str, ...]] = [(grantee,)]
    while stack:
        chain = stack.pop()
        head = chain[0]
        if per_role.get(head, 0) >= MAX_PATHS:
            continue
        per_role[head] = per_role.get(head, 0) + 1
        out.append(chain)
        for member in reversed(members.get(head, ())):
            if member not in chain:
                stack.append((member, *chain))
    return out


def membership_step(
    member: str, group: str, actual: ActualState, desired: DesiredState, catalog: PrivilegeCatalog
) -> Step:
    """Why ``member`` is a member of ``group``: a rule, the catalog's ``inherits``, or a hand grant."""
    user = desired.users.get(member)
    role = actual.roles.get(member)
    managed = role is not None and role.marker is not None
    if user is not None and managed and group in user.memberships:
        why = "; ".join(r.describe() for r in user.memberships[group])
        return Step(StepKind.RULE, f"{member} is a member of {group}: {why}")
    model = catalog.roles.get(member)
    if model is not None and group in model.inherits:
        return Step(StepKind.CATALOG_INHERITS, f"{member} inherits {group} (catalog, {model.file})")
    return Step(
        StepKind.HAND_MEMBERSHIP,
        f"{member} is a member of {group} by hand (no rule or catalog inherits gives it)",
    )


def _catalog_grants(
    catalog: PrivilegeCatalog, actual: ActualState, default_owners: tuple[str, ...]
) -> dict[Grant, str]:
    snap = actual.privileges
    if snap is None:
        return {}
    out: dict[Grant, str] = {}
    for name in sorted(catalog.roles):
        model = catalog.roles[name]
        if not model.manages_privileges:
            continue
        want, _, _ = desired_grants(model, snap, default_owners)
        for grant, reasons in want.items():
            out.setdefault(grant, reasons[0].text)
    return out


def _catalog_text(catalog_grants: Mapping[Grant, str], grantee: str, obj: Obj, priv: str) -> str | None:
    """The catalog's reason for ``grantee`` holding ``priv`` on ``obj`` -- on the object itself or,
    where wildcards are one grant (MariaDB ``db``.*), on every object of its schema."""
    for o in (obj, Obj(obj.database, obj.kind, obj.schema, "*"), Obj(obj.database, TABLE, obj.schema, "*")):
        text = catalog_grants.get(Grant(grantee, o, priv))
        if text:
            return text
    return None


def _grant_step(
    acl: ObjectAcl, grantee: str, priv: str, columns: tuple[str, ...], catalog_grants: Mapping[Grant, str]
) -> Step:
    obj = acl.obj
    what = f"{priv} ({', '.join(columns)})" if columns else priv
    if grantee == acl.owner and not columns:
        return Step(StepKind.OWNER, f"{grantee} owns {obj.label()}: holds {priv}")
    objs = [Obj(obj.database, COLUMN, obj.schema, obj.name, c) for c in columns] if columns else [obj]
    texts = [_catalog_text(catalog_grants, grantee, o, priv) for o in objs]
    if all(texts):
        return Step(StepKind.CATALOG_GRANT, f"{grantee} holds {what}: {texts[0]}")
    return Step(StepKind.HAND_GRANT, f"{grantee} holds {what} by hand grant (the catalog does not give it)")
