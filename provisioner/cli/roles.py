"""``provisioner roles show ROLE``: a business role's effective privileges,
inherited ones included, expanded against the live targets, each with where
it comes from; and the table-level part of ``provisioner explain``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.core.governance.sodeval import Conflict
from provisioner.core.ownership.ledger import mine
from provisioner.core.privileges.access import StepKind, membership_step
from provisioner.core.privileges.catalog import Catalog
from provisioner.core.privileges.dialect import for_target
from provisioner.core.privileges.spec import EffectivePrivilege, PrivilegeCatalog, effective_privileges
from provisioner.core.reconcile.escalation import privileged_attributes
from provisioner.core.values.grants import COLUMN, DEFAULT, FUNCTION, PUBLIC, SEQUENCE, TABLE, Grant, Obj
from provisioner.core.values.model import ActualState, DesiredState, RoleKind
from provisioner.core.values.plan import ChangeKind, TargetPlan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.installation import load
from provisioner.errors import ConfigError
from provisioner.mappings import load_mappings


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
    ours = for_target(catalog, state.capabilities)[0] if state is not None else catalog
    return effective_privileges(ours, roles, snap), snap is not None and len(snap.databases) > 1


def render_role(catalog: PrivilegeCatalog, role: str, actual: Mapping[str, ActualState]) -> str:
    model = catalog.roles[role]
    lines = [f"{role} ({model.file})"]
    if model.inherits:
        lines.append(f"  inherits: {', '.join(model.inherits)}")
    lines.append(f"  extras: {model.extras}" if model.manages_privileges else "  privileges: not managed")
    for name, state in actual.items():
        eff, many = _effective(catalog, [role], state)
        snap = state.privileges
        dbs = ", ".join(d or "(the server: a schema is a database)" for d in snap.databases) if snap else ""
        where = f" (databases {dbs})" if snap else " (privileges not read: symbolic)"
        lines += ["", f"Target {name}{where}: {len(eff)} effective privilege(s)"]
        for e in eff:
            status = ""
            if snap is not None:
                status = "held   " if Grant(e.path[-1], e.obj, e.privilege) in snap.grants else "MISSING"
            lines.append(f"  {status} {e.privilege:<10} {short(e.obj, many):<40} via {e.because()}")
    return "\n".join(lines)


def render_access(
    user: str,
    login: str,
    tp: TargetPlan | None,
    state: ActualState,
    desired: DesiredState,
    catalog: PrivilegeCatalog,
    held_back: Sequence[Conflict],
) -> str:
    """What ``user`` (login role ``login``) can do on one target once this plan is
    applied -- effective access only, every path -- and what SoD withholds."""
    changes = tp.changes if tp is not None else ()
    catalog = for_target(catalog, state.capabilities)[0]  # MariaDB: the catalog in its own terms
    role = state.roles.get(login)
    granted = {str(c.param("group")) for c in changes if c.role == login and c.kind is ChangeKind.GRANT_MEMBERSHIP}
    revoked = {str(c.param("group")) for c in changes if c.role == login and c.kind is ChangeKind.REVOKE_MEMBERSHIP}
    disabled = any(
        c.role == login and c.kind is ChangeKind.ALTER_ROLE and c.param("login", True) is False for c in changes
    )
    lines = ["", f"Effective access of {user} on target {state.target} (once this plan is applied):"]
    if role is None and not granted:
        lines.append(f"  none: no role {login} on this target" + (" and none planned" if tp is not None else ""))
    elif disabled or (role is not None and not role.login and not granted):
        lines.append(f"  none: {login} cannot log in (disabled)")
    else:
        lines += _effective_lines(user, login, state, desired, catalog, (set(role.member_of) if role else set())
                                  - revoked | granted, granted)
    mine = [c for c in held_back if c.user == login]
    for c in mine:
        for group in c.withheld:
            policy = c.policy
            lines.append(f"  WITHHELD {group} by SoD policy {policy.id} ({policy.severity}): {policy.description}")
            snap = state.privileges
            many = snap is not None and len(snap.databases) > 1
            for e in effective_privileges(catalog, [group], snap):
                lines.append(f"    would {e.privilege} {short(e.obj, many)} (not granted)")
    return "\n".join(lines)


def _effective_lines(
    user: str, login: str, state: ActualState, desired: DesiredState, catalog: PrivilegeCatalog,
    groups: set[str], planned: set[str],
) -> list[str]:
    snap = state.privileges
    many = snap is not None and len(snap.databases) > 1
    lines: list[str] = []
    for group in sorted(groups):
        step = membership_step(login, group, state, desired, catalog)
        if group in planned:
            user_ = desired.users.get(login)
            why = "; ".join(r.describe() for r in user_.memberships.get(group, ())) if user_ else ""
            how, hand = f"rule {why or '(planned)'} gives (planned in this run)", False
        elif step.kind is StepKind.RULE:
            rules = desired.users[login].memberships[group]
            how, hand = "rule " + ", ".join(f"`{r.rule}`" for r in rules) + " gives", False
        else:
            how, hand = f"{step.text}, which gives", step.kind is not StepKind.CATALOG_INHERITS
        mark = "  [HAND GRANT]" if hand else ""
        eff = effective_privileges(catalog, [group], snap)
        for e in eff:
            lines.append(f"  {user} can {e.privilege} {short(e.obj, many)} because {how} {e.because()}{mark}")
        if snap is not None and group not in catalog.roles:
            for g in sorted(snap.of(group)):
                if g.obj.kind != DEFAULT:
                    lines.append(
                        f"  {user} can {g.privilege} {short(g.obj, many)} because {how} `{group}`, "
                        f"which holds it by hand grant (not in the catalog)  [HAND GRANT]"
                    )
        if eff:
            continue
        if snap is None:  # never "nothing" for privileges that were never looked at
            lines.append(
                f"  {user} is a member of {group} ({how.removesuffix(', which gives').removesuffix(' gives')}): "
                "its privileges were not read"
                " (manage_privileges = false; `provisioner access OBJECT` reads them)"
            )
        elif not snap.of(group):
            what = how.removesuffix(", which gives").removesuffix(" gives")
            lines.append(f"  {user} is a member of {group} ({what}): no privileges of its own")
    for g in sorted(snap.of(login)) if snap is not None else ():
        if g.obj.kind != DEFAULT:
            lines.append(f"  {user} can {g.privilege} {short(g.obj, many)} by a hand grant to {login}  [HAND GRANT]")
    public = sorted(snap.of(PUBLIC)) if snap is not None else []
    if public:
        what = ", ".join(f"{g.privilege} {short(g.obj, many)}" for g in public if g.obj.kind != DEFAULT)
        lines.append(f"  everyone (PUBLIC), so {user} too, can: {what}")
    return lines or ["  none"]


@cli.group()
def roles() -> None:
    """Work with the role catalog (mappings/roles) and the managed roles on the targets."""


def _managed_groups(actual: Mapping[str, ActualState], instance: str | None) -> set[str]:
    """This installation's group roles (another installation's on a shared server are not)."""
    return {
        n for state in actual.values() for n, r in state.roles.items()
        if (m := mine(r, instance)) is not None and m.kind is RoleKind.GROUP
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
    managed = {n for state in actual.values() for n, r in state.roles.items() if mine(r, cfg.instance) is not None}
    if role not in mappings.catalog.roles and role not in mappings.privileges.roles and role not in managed:
        known = ", ".join(sorted(set(mappings.catalog.roles) | _managed_groups(actual, cfg.instance))) or "none"
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
    names = sorted(set(mappings.catalog.roles) | _managed_groups(actual, cfg.instance))
    rows: list[dict[str, Any]] = []
    for name in names:
        entry = mappings.catalog.roles.get(name)
        per_target = {
            t: {
                "exists": name in state.roles,
                "managed": name in state.roles and mine(state.roles[name], cfg.instance) is not None,
                # not the provisioner's own account (MariaDB: it holds the roles it created WITH ADMIN OPTION)
                "members": sum(1 for n, r in state.roles.items() if name in r.member_of and n != state.session_role),
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
