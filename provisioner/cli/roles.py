"""``provisioner roles show ROLE``: a business role's effective privileges,
inherited ones included, expanded against the live targets, each with where
it comes from; and the table-level part of ``provisioner explain``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from provisioner.cli import cli
from provisioner.cli.common import config_option, load
from provisioner.core.access import membership_step
from provisioner.core.catalog import Catalog
from provisioner.core.escalation import privileged_attributes
from provisioner.core.grants import COLUMN, DEFAULT, FUNCTION, SEQUENCE, TABLE, Grant, Obj
from provisioner.core.model import ActualState, DesiredState, RoleKind
from provisioner.core.privileges import EffectivePrivilege, PrivilegeCatalog, effective_privileges
from provisioner.errors import ConfigError
from provisioner.mappings import load_mappings
from provisioner.runtime import RunContext, Targets


def short(obj: Obj, many_databases: bool = False) -> str:
    """``trading.orders``, ``trading.approvals(status)``, ``schema trading`` ..."""
    if obj.kind in (TABLE, SEQUENCE, FUNCTION) and obj.name != "*":
        text = f"{obj.schema}.{obj.name}"
    elif obj.kind == COLUMN:
        text = f"{obj.schema}.{obj.name}({obj.column})"
    else:
        text = obj.label()
    return f"{text} in database {obj.database}" if many_databases and obj.kind != "database" else text


def _effective(
    catalog: PrivilegeCatalog, roles: list[str], state: ActualState | None
) -> tuple[tuple[EffectivePrivilege, ...], bool]:
    snap = state.privileges if state is not None else None
    return effective_privileges(catalog, roles, snap), snap is not None and len(snap.databases) > 1


def render_role(catalog: PrivilegeCatalog, role: str, actual: Mapping[str, ActualState]) -> str:
    model = catalog.roles[role]
    lines = [f"{role} ({model.file})"]
    if model.inherits:
        lines.append(f"  inherits: {', '.join(model.inherits)}")
    lines.append(f"  extras: {model.extras}" if model.manages_privileges else "  privileges: not managed")
    for name, state in actual.items():
        eff, many = _effective(catalog, [role], state)
        snap = state.privileges
        where = f" (databases {', '.join(snap.databases)})" if snap else " (privileges not read: symbolic)"
        lines += ["", f"Target {name}{where}: {len(eff)} effective privilege(s)"]
        for e in eff:
            status = ""
            if snap is not None:
                status = "held   " if Grant(e.path[-1], e.obj, e.privilege) in snap.grants else "MISSING"
            lines.append(f"  {status} {e.privilege:<10} {short(e.obj, many):<40} via {e.because()}")
    return "\n".join(lines)


def render_access(
    user: str, roles: Mapping[str, list[str]], catalog: PrivilegeCatalog, actual: Mapping[str, ActualState]
) -> str:
    """``alice can INSERT trading.orders because rule `desk-traders` gives `trade_executor`, which grants ...``"""
    lines = ["", f"Access of {user} through the role catalog:"]
    granted = sorted(r for r in roles if r in catalog.roles)
    if not granted:
        return "\n".join([*lines, "  none (no catalog role with privileges)"])
    items: list[tuple[str, ActualState | None]] = list(actual.items()) or [("(no target)", None)]
    for name, state in items:
        lines.append(f"  [{name}]")
        seen: set[tuple[str, Obj]] = set()
        for role in granted:
            eff, many = _effective(catalog, [role], state)
            rule = ", ".join(f"`{r}`" for r in roles[role])
            for e in eff:
                if (e.privilege, e.obj) in seen:
                    continue
                seen.add((e.privilege, e.obj))
                lines.append(f"  {user} can {e.privilege} {short(e.obj, many)} because rule {rule} gives {e.because()}")
    return "\n".join(lines)


@cli.group()
def roles() -> None:
    """Work with the role catalog (mappings/roles) and the managed roles on the targets."""


def _managed_groups(actual: Mapping[str, ActualState]) -> set[str]:
    return {
        n for state in actual.values() for n, r in state.roles.items()
        if r.marker is not None and r.marker.kind is RoleKind.GROUP
    }


def role_facts(
    role: str, catalog: Catalog, privileges: PrivilegeCatalog, actual: Mapping[str, ActualState],
    desired: DesiredState,
) -> dict[str, Any]:
    """Everything ``roles show`` says about ``role``, as JSON-ready data."""
    entry = catalog.roles.get(role)
    model = privileges.roles.get(role)
    facts: dict[str, Any] = {
        "role": role,
        "in_catalog": entry is not None,
        "file": entry.file if entry else None,
        "description": entry.description if entry else None,
        "owner": entry.owner if entry else None,
        "sensitivity": catalog.sensitivity(role).name.lower(),
        "inherits": list(model.inherits) if model else [],
        "extras": model.extras if model and model.manages_privileges else None,
        "targets": {},
    }
    for name, state in actual.items():
        found = state.roles.get(role)
        members = sorted(m for m, r in state.roles.items() if role in r.member_of)
        snap = state.privileges
        held = sorted(snap.of(role)) if snap is not None else []
        facts["targets"][name] = {
            "exists": found is not None,
            "managed": bool(found and found.marker),
            "kind": found.marker.kind.value if found and found.marker else None,
            "login": bool(found and found.login),
            "attributes": list(privileged_attributes(found)) if found else [],
            "member_of": sorted(found.member_of) if found else [],
            "members": [
                {**membership_step(m, role, state, desired, privileges).to_json(), "member": m,
                 "person": _person(m, state, desired)}
                for m in members
            ],
            "default_privileges": [
                {"privilege": g.privilege, "on": g.obj.describe()} for g in held if g.obj.kind == DEFAULT
            ],
            "privileges_held": [
                {"privilege": g.privilege, "on": g.obj.describe()} for g in held if g.obj.kind != DEFAULT
            ],
            "privileges_read": snap is not None,
        }
    return facts


def _person(member: str, state: ActualState, desired: DesiredState) -> str | None:
    role = state.roles.get(member)
    if role is None or role.marker is None or role.marker.kind is not RoleKind.USER:
        return None
    user = desired.users.get(member)
    return user.username if user is not None else role.marker.stable_id


def render_facts(facts: Mapping[str, Any]) -> str:
    where = f" ({facts['file']})" if facts["file"] else " (not in the role catalog)"
    lines = [f"{facts['role']}{where}"]
    lines.append(f"  description: {facts['description'] or '-'}")
    lines.append(f"  owner: {facts['owner'] or '- (no accountable owner: not in the catalog)'}")
    lines.append(f"  sensitivity: {facts['sensitivity']}")
    if facts["inherits"]:
        lines.append(f"  inherits: {', '.join(facts['inherits'])}")
    lines.append(f"  extras: {facts['extras']}" if facts["extras"] else "  privileges: not managed by the catalog")
    for name, t in facts["targets"].items():
        state = "missing" if not t["exists"] else (f"managed {t['kind']} role" if t["managed"] else "NOT managed")
        lines += ["", f"  Target {name}: {state}" + (f"; HAS {', '.join(t['attributes'])}" if t["attributes"] else "")]
        if t["member_of"]:
            lines.append(f"    member of: {', '.join(t['member_of'])}")
        lines.append(f"    members ({len(t['members'])}):")
        for m in t["members"]:
            who = f"{m['member']} [{m['person']}]" if m["person"] else m["member"]
            mark = "  HAND GRANT" if m["kind"] == "hand_membership" else ""
            lines.append(f"      {who}{mark}: {m['text']}")
        if not t["privileges_read"]:
            lines.append("    privileges: not read (manage_privileges = false)")
            continue
        lines.append(f"    default privileges ({len(t['default_privileges'])}):")
        lines += [f"      {g['privilege']} on {g['on']}" for g in t["default_privileges"]]
        lines.append(f"    privileges held ({len(t['privileges_held'])}):")
        lines += [f"      {g['privilege']} on {g['on']}" for g in t["privileges_held"]]
    return "\n".join(lines)


@roles.command(name="show")
@config_option
@click.option("--target", "only", multiple=True, help="Only this target (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("role")
def show(config_path: str, only: tuple[str, ...], fmt: str, role: str) -> None:
    """ROLE's owner, sensitivity, description, members (with the reason each holds it),
    default privileges, privileges held and effective privileges (inherited included)."""
    from provisioner.review.campaign import read_inputs

    cfg = load(config_path)
    ctx = RunContext.manual(cfg, None)
    with Targets(cfg, set(only) if only else None) as targets:
        inp = read_inputs(cfg, ctx, targets)
    mappings, actual = inp.mappings, inp.actual
    managed = {n for state in actual.values() for n, r in state.roles.items() if r.marker is not None}
    if role not in mappings.catalog.roles and role not in mappings.privileges.roles and role not in managed:
        known = ", ".join(sorted(set(mappings.catalog.roles) | _managed_groups(actual))) or "none"
        raise ConfigError(f"{role!r} is not a catalog role or a managed role on any target (known: {known})")
    facts = role_facts(role, mappings.catalog, mappings.privileges, actual, inp.desired)
    if fmt == "json":
        click.echo(json.dumps(facts, indent=2, sort_keys=True))
        return
    click.echo(render_facts(facts))
    if role in mappings.privileges.roles:
        click.echo("")
        click.echo(render_role(mappings.privileges, role, actual))


@roles.command(name="list")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_roles(config_path: str, fmt: str) -> None:
    """Every catalog role and every managed group role on the targets: owner, sensitivity, members."""
    cfg = load(config_path)
    mappings = load_mappings(cfg.mappings_dir)
    with Targets(cfg) as targets:
        actual = targets.inspect_all()
    names = sorted(set(mappings.catalog.roles) | _managed_groups(actual))
    rows: list[dict[str, Any]] = []
    for name in names:
        entry = mappings.catalog.roles.get(name)
        per_target = {
            t: {
                "exists": name in state.roles,
                "managed": bool(name in state.roles and state.roles[name].marker),
                "members": sum(1 for r in state.roles.values() if name in r.member_of),
            }
            for t, state in actual.items()
        }
        rows.append({
            "role": name,
            "in_catalog": entry is not None,
            "owner": entry.owner if entry else None,
            "sensitivity": mappings.catalog.sensitivity(name).name.lower(),
            "description": entry.description if entry else None,
            "targets": per_target,
        })
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    click.echo(f"{'ROLE':<32} {'SENSITIVITY':<11} {'OWNER':<28} {'MEMBERS':>7}  TARGETS")
    for row in rows:
        members = sum(t["members"] for t in row["targets"].values())
        where = ", ".join(
            f"{t}:{'managed' if v['managed'] else 'UNMANAGED' if v['exists'] else 'missing'}"
            for t, v in row["targets"].items()
        )
        owner = row["owner"] or "(not in catalog)"
        click.echo(f"{row['role']:<32} {row['sensitivity']:<11} {owner:<28} {members:>7}  {where}")
