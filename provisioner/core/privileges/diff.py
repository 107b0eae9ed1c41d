"""Catalog privileges vs the privileges a target holds -> changes.  Pure.

For every catalog role in the privilege model (see
:mod:`provisioner.core.privileges.spec`) on one target:

* the role must exist as a managed group role (created here when no rule
  creates it);
* its ``inherits`` become memberships between group roles, managed like user
  memberships;
* its own grant statements, expanded against the target's objects, are
  granted where missing; privileges it holds that the catalog does not list
  are revoked or reported per ``extras``.

Roles that exist but are not managed by provisioner, or are protected, are
reported and never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from provisioner.core.ownership.ledger import is_foreign
from provisioner.core.ownership.policy import DiffPolicy, is_protected
from provisioner.core.privileges.spec import PrivilegeCatalog, RoleModel, expand
from provisioner.core.values.grants import COLUMN, TABLE, Grant, Obj, PrivilegeSnapshot, sort_privileges
from provisioner.core.values.model import ActualRole, ActualState, Marker, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Draft, Notice, NoticeLevel, make_change

NOT_GRANTABLE = "not_grantable"
"""Notice code: a catalog grant the provisioner's role cannot give."""


@dataclass(frozen=True, slots=True)
class PrivilegePolicy:
    diff: DiffPolicy = field(default_factory=DiffPolicy)
    default_owners: tuple[str, ...] = ()
    """Roles whose future objects wildcard grants cover (``default_privileges_for``);
    empty: the owner of each schema."""


def plan_privileges(
    catalog: PrivilegeCatalog, actual: ActualState, policy: PrivilegePolicy, planned: Sequence[Change] = ()
) -> tuple[list[Change], list[Notice]]:
    """Changes and notices for the catalog's roles on one target; ``planned``
    are the changes the membership diff already made (roles it creates)."""
    out = Draft()
    if not catalog.roles:
        return [], []
    snapshot = actual.privileges
    creating = {c.role for c in planned if c.kind is ChangeKind.CREATE_ROLE}
    usable: set[str] = set()
    held: dict[str, set[Grant]] = {}
    for g in snapshot.grants if snapshot is not None else ():
        held.setdefault(g.role, set()).add(g)
    for name in sorted(catalog.roles):
        model = catalog.roles[name]
        role = actual.roles.get(name)
        if role is None:
            if name not in creating:
                out.changes.append(_create(model, policy.diff.instance))
            usable.add(name)
        elif _manageable(model, role, actual, policy, out):
            usable.add(name)
    inexpressible: list[str] = []
    for name in sorted(usable):
        model = catalog.roles[name]
        _memberships(model, actual.roles.get(name), usable, out)
        if not model.manages_privileges:
            continue
        if not actual.capabilities.object_privileges:
            inexpressible.append(f"{name} ({model.file})")
            continue
        if snapshot is None:
            out.note(
                NoticeLevel.WARNING,
                "privileges_unmanaged",
                f"catalog role {name} declares privileges but target {actual.target} does not manage "
                "privileges (set manage_privileges = true)",
                name,
            )
            continue
        _privileges(model, snapshot, held.get(name, set()), policy, out)
    if inexpressible:
        caps = actual.capabilities
        out.note(
            NoticeLevel.INFO,
            "privileges_not_supported",
            f"target {actual.target} ({caps.dialect}) does not apply the object privileges of catalog role(s) "
            f"{', '.join(inexpressible)}: {caps.object_privileges_why_not}",
        )
    return out.changes, out.notices


def _create(model: RoleModel, instance: str | None = None) -> Change:
    reason = Reason(f"catalog:{model.name}", f"catalog role {model.name} ({model.file})")
    return make_change(
        ChangeKind.CREATE_ROLE,
        model.name,
        [reason],
        role_kind="group",
        login=False,
        valid_until=None,
        marker=Marker(RoleKind.GROUP, instance=instance).to_json(),
        after={"exists": True},
    )


def _manageable(model: RoleModel, role: ActualRole, actual: ActualState, policy: PrivilegePolicy, out: Draft) -> bool:
    if is_protected(role, actual, policy.diff):
        out.note(
            NoticeLevel.ERROR, "protected", f"catalog role {model.name} is a protected role; not touched", model.name
        )
        return False
    if role.marker is None or is_foreign(role.marker, policy.diff.instance):
        out.note(
            NoticeLevel.WARNING,
            "unmanaged",
            f"catalog role {model.name} exists but is not managed by this installation; its privileges are not "
            "touched",
            model.name,
        )
        return False
    if role.marker.kind is not RoleKind.GROUP:
        out.note(NoticeLevel.ERROR, "conflict", f"catalog role {model.name} is a managed login role", model.name)
        return False
    return True


def _memberships(model: RoleModel, role: ActualRole | None, usable: set[str], out: Draft) -> None:
    have = role.member_of if role else frozenset()
    for parent in model.inherits:
        if parent in have:
            continue
        if parent not in usable:
            out.note(
                NoticeLevel.WARNING,
                "inherits",
                f"catalog role {model.name} inherits {parent}, which provisioner cannot manage; not granted",
                model.name,
            )
            continue
        reason = Reason(f"catalog:{model.name}", f"catalog role {model.name} inherits {parent} ({model.file})")
        out.changes.append(_member(ChangeKind.GRANT_MEMBERSHIP, model.name, parent, reason))
    for group in sorted(have - set(model.inherits)):
        if group in usable or model.extras == "revoke":
            why = "not in its inherits" + ("" if group in usable else " (extras = revoke)")
            reason = Reason(f"catalog:{model.name}", f"catalog role {model.name}: {group} {why} ({model.file})")
            out.changes.append(_member(ChangeKind.REVOKE_MEMBERSHIP, model.name, group, reason))
        else:
            out.note(
                NoticeLevel.WARNING,
                "privilege_extra",
                f"{model.name} is a member of {group}, which the catalog does not list (extras = report)",
                model.name,
            )


def _member(kind: ChangeKind, role: str, group: str, reason: Reason) -> Change:
    granted = kind is ChangeKind.GRANT_MEMBERSHIP
    return make_change(kind, role, [reason], group=group, before={"member": not granted}, after={"member": granted})


def desired_grants(
    model: RoleModel, snapshot: PrivilegeSnapshot, default_owners: tuple[str, ...] = ()
) -> tuple[dict[Grant, list[Reason]], list[str], list[str]]:
    """Grants ``model`` should hold on this target, each with its reasons;
    messages for objects that do not exist; databases not on this target."""
    want: dict[Grant, list[Reason]] = {}
    missing: list[str] = []
    elsewhere: list[str] = []
    for spec in model.grants:
        db = spec.database or snapshot.default_database
        inv = snapshot.databases.get(db)
        if inv is None:
            elsewhere.append(db)
            continue
        exp = expand(spec, inv, default_owners)
        for obj in exp.objects:
            for priv in spec.privileges:
                text = f"catalog role {model.name} grants {spec.what()} ({spec.file})"
                want.setdefault(Grant(model.name, obj, priv), []).append(Reason(f"catalog:{model.name}", text))
        missing += [
            f"catalog role {model.name} grants {', '.join(spec.privileges)} on {m} in database {db}, "
            f"which does not exist (yet); not granted ({spec.where})"
            for m in exp.missing
        ]
    return want, missing, sorted(set(elsewhere))


def _privileges(
    model: RoleModel, snapshot: PrivilegeSnapshot, have: set[Grant], policy: PrivilegePolicy, out: Draft
) -> None:
    want, missing, elsewhere = desired_grants(model, snapshot, policy.default_owners)
    for message in missing:
        out.note(NoticeLevel.WARNING, "missing_object", message, model.name)
    for db in elsewhere:
        out.note(
            NoticeLevel.INFO,
            "other_database",
            f"catalog role {model.name} has grants for database {db}, which this target does not manage",
            model.name,
        )
    grants = _grantable([g for g in want if g not in have], model, snapshot, out)
    extras = sorted(have - set(want))
    if model.extras == "revoke":
        reason = Reason(
            f"catalog:{model.name}",
            f"catalog role {model.name} does not grant it (extras = revoke, {model.file})",
        )
        out.changes += _grouped(ChangeKind.REVOKE_PRIVILEGE, extras, lambda g: [reason])
        again = _columns_cleared(extras, want, have)
        note = Reason(f"catalog:{model.name}", "granted again: the table-level REVOKE of this run revokes it too")
        why = {**want, **{g: [*want[g], note] for g in again}}
        out.changes += _grouped(ChangeKind.GRANT_PRIVILEGE, grants + again, lambda g: why[g])
        return
    out.changes += _grouped(ChangeKind.GRANT_PRIVILEGE, grants, lambda g: want[g])
    by_obj: dict[Obj, list[str]] = {}
    for g in extras:
        by_obj.setdefault(g.obj, []).append(g.privilege)
    for obj, privs in sorted(by_obj.items()):
        out.note(
            NoticeLevel.WARNING,
            "privilege_extra",
            f"{model.name} holds {', '.join(sort_privileges(tuple(privs)))} on {obj.describe()}, "
            "which the catalog does not grant (extras = report)",
            model.name,
        )


def _columns_cleared(revoked: list[Grant], want: dict[Grant, list[Reason]], have: set[Grant]) -> list[Grant]:
    """Held column grants the catalog wants that a table-level revoke of the same privilege
    takes with it: PostgreSQL ("revoking a table-level privilege also revokes column
    privileges of the same kind on all columns of the table") and MariaDB alike (a ``db.*``
    wildcard is another object, whose revoke leaves column privileges alone)."""
    tables = {(g.obj.database, g.obj.schema, g.obj.name, g.privilege) for g in revoked if g.obj.kind == TABLE}
    if not tables:
        return []
    return sorted(
        g
        for g in want
        if g.obj.kind == COLUMN and g in have and (g.obj.database, g.obj.schema, g.obj.name, g.privilege) in tables
    )


def _grantable(grants: list[Grant], model: RoleModel, snapshot: PrivilegeSnapshot, out: Draft) -> list[Grant]:
    """``grants`` without those the provisioner's own role cannot give (no grant option, not
    the owner's privileges: ``Inventory.ungrantable``), each object refused reported once as
    an error notice naming the catalog file, the role and the object (it would fail at apply)."""
    refused: dict[Obj, list[str]] = {}
    kept = []
    for g in grants:
        inv = snapshot.databases.get(g.obj.database)
        if inv is not None and inv.cannot_grant(g.obj, g.privilege):
            refused.setdefault(g.obj, []).append(g.privilege)
        else:
            kept.append(g)
    for obj, privs in sorted(refused.items()):
        out.note(
            NoticeLevel.ERROR,
            NOT_GRANTABLE,
            f"{model.file} [role.{model.name}]: {', '.join(sort_privileges(tuple(privs)))} on {obj.describe()} "
            "refused: the provisioner's role holds no grant option on it and does not have its owner's "
            "privileges (a DBA can grant it WITH GRANT OPTION to the provisioner's role, or the catalog "
            "can leave the object out)",
            model.name,
        )
    return kept


def _grouped(kind: ChangeKind, grants: Iterable[Grant], reasons_of: Callable[[Grant], list[Reason]]) -> list[Change]:
    """One change per (role, object) carrying every privilege for it."""
    by_obj: dict[tuple[str, Obj], list[Grant]] = {}
    for g in grants:
        by_obj.setdefault((g.role, g.obj), []).append(g)
    changes = []
    for (role, obj), items in sorted(by_obj.items()):
        reasons: dict[Reason, None] = {}
        for g in items:
            reasons.update(dict.fromkeys(reasons_of(g)))
        privs = ", ".join(sort_privileges(tuple(g.privilege for g in items)))
        held = kind is ChangeKind.REVOKE_PRIVILEGE
        changes.append(
            make_change(
                kind,
                role,
                list(reasons),
                privileges=privs,
                object=obj.describe(),
                before={"held": held},
                after={"held": not held},
                **obj.to_params(),
            )
        )
    return changes


def change_grants(change: Change) -> list[Grant]:
    """The individual grants a GRANT_PRIVILEGE / REVOKE_PRIVILEGE change names."""
    obj = Obj.from_params(dict(change.params))
    privs = [p.strip() for p in str(change.param("privileges") or "").split(",") if p.strip()]
    return [Grant(change.role, obj, p) for p in privs]


def verify_privilege(change: Change, after: ActualState) -> str | None:
    """A problem if the re-read target does not show ``change``'s effect."""
    snap = after.privileges
    if snap is None:
        return "privileges were not read after apply"
    grants = change_grants(change)
    if change.kind is ChangeKind.GRANT_PRIVILEGE:
        absent = [g.privilege for g in grants if g not in snap.grants]
        return f"{', '.join(absent)} missing after apply" if absent else None
    present = [g.privilege for g in grants if g in snap.grants]
    return f"{', '.join(present)} still held (granted by another grantor?)" if present else None
