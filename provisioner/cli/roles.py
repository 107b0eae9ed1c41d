"""``provisioner roles show ROLE``: a business role's effective privileges,
inherited ones included, expanded against the live targets, each with where
it comes from; and the table-level part of ``provisioner explain``."""

from __future__ import annotations

from collections.abc import Mapping

import click

from provisioner.cli import cli
from provisioner.cli.common import config_option, load
from provisioner.core.grants import COLUMN, FUNCTION, SEQUENCE, TABLE, Grant, Obj
from provisioner.core.model import ActualState
from provisioner.core.privileges import EffectivePrivilege, PrivilegeCatalog, effective_privileges
from provisioner.errors import ConfigError
from provisioner.mappings import load_mappings
from provisioner.runtime import Targets


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
    """Work with the role catalog (mappings/roles)."""


@roles.command(name="show")
@config_option
@click.option("--target", "only", multiple=True, help="Only this target (repeatable).")
@click.argument("role")
def show(config_path: str, only: tuple[str, ...], role: str) -> None:
    """Effective privileges of ROLE (inherited included), expanded on the live targets."""
    cfg = load(config_path)
    mappings = load_mappings(cfg.mappings_dir)
    catalog = mappings.privileges
    if role not in catalog.roles:
        known = ", ".join(sorted(catalog.roles)) or "none"
        raise ConfigError(f"{role!r} is not a catalog role with privileges (known: {known})")
    with Targets(cfg, set(only) if only else None) as targets:
        actual = targets.inspect_all()
    click.echo(render_role(catalog, role, actual))
