"""``provisioner access OBJECT``: who can use a table, schema, function or
database, with which privilege, and every path by which they can."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.core.privileges.access import Access, who_can
from provisioner.core.privileges.dialect import for_target
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.installation import load
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.review.worksheets import cell
from provisioner.targets.mysql import MysqlTarget
from provisioner.targets.postgres import PostgresTarget

CSV_COLUMNS = [
    "target", "object", "privilege", "columns", "role", "login", "person", "hand_grant", "path", "step_kinds",
]


def render_text(found: Sequence[Access]) -> str:
    lines: list[str] = []
    for a in found:
        people = sorted({p.role for p in a.paths if p.login})
        lines.append(f"[{a.target}] {a.obj.describe()} (owner {a.owner}): {len(people)} login role(s) can use it")
        for note in a.notes:
            lines.append(f"  note: {note}")
        if a.public:
            lines.append(f"  PUBLIC (every role of the cluster) holds {', '.join(a.public)}")
        privilege = None
        for p in a.paths:
            if p.privilege != privilege:
                privilege = p.privilege
                lines.append(f"  {privilege}:")
            cols = f" ({', '.join(p.columns)})" if p.columns else ""
            who = f"{p.role} [{p.person}]" if p.person else p.role
            kind = "login" if p.login else "role"
            mark = "  HAND GRANT" if p.hand else ""
            lines.append(f"    {who} ({kind}){cols}{mark}")
            lines.append(f"      {p.describe()}")
        if not a.paths and not a.public:
            lines.append("  nobody")
    return "\n".join(lines)


def render_csv(found: Sequence[Access]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for a in found:
        obj = a.obj.describe()
        for priv in a.public:
            row = (a.target, obj, priv, "", "PUBLIC", "", "", "false", "granted to PUBLIC", "public")
            w.writerow([cell(v) for v in row])
        for p in a.paths:
            w.writerow([cell(v) for v in (
                a.target, obj, p.privilege, " ".join(p.columns), p.role, str(p.login).lower(), p.person or "",
                str(p.hand).lower(), p.describe(), " ".join(p.kinds),
            )])
    return buf.getvalue()


@cli.command(name="access")
@config_option
@click.option("--privilege", help="Only this privilege (e.g. UPDATE).")
@click.option("--database", help="Database the object is in (default: the target's default database).")
@click.option("--target", "only", multiple=True, help="Only this target (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.argument("obj", metavar="OBJECT")
def access(
    config_path: str, privilege: str | None, database: str | None, only: tuple[str, ...], fmt: str, obj: str
) -> None:
    """Who can use OBJECT (schema.table, schema.function, schema or database), with every path."""
    from provisioner.review.campaign import read_inputs

    cfg = load(config_path)
    unknown = set(only) - {t.name for t in cfg.targets}
    if unknown:
        raise ConfigError(f"unknown target(s): {', '.join(sorted(unknown))}")
    ctx = RunContext.manual(cfg, None)
    found: list[Access] = []
    with Targets(cfg, set(only) if only else None) as targets:
        inp = read_inputs(cfg, ctx, targets)
        for tcfg in cfg.targets:
            if only and tcfg.name not in only:
                continue
            target = targets.get(tcfg.name)
            if not isinstance(target, PostgresTarget | MysqlTarget):
                click.echo(f"[{tcfg.name}] skipped: access is not answered for this target type", err=True)
                continue
            state = inp.actual[tcfg.name]
            catalog, _ = for_target(inp.mappings.privileges, state.capabilities)  # MariaDB: schemas are databases
            for acl in target.object_access(obj, database):
                found.append(who_can(acl, state, inp.desired, catalog, tcfg.privilege_owners, privilege))
    if not found:
        raise ProvisionerError(f"no table, sequence, function, schema or database named {obj!r} on any target")
    if fmt == "json":
        click.echo(json.dumps({"object": obj, "results": [a.to_json() for a in found]}, indent=2, sort_keys=True))
    elif fmt == "csv":
        click.echo(render_csv(found), nl=False)
    else:
        click.echo(render_text(found))
