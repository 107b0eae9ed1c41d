"""provisioner sod report: every segregation-of-duties conflict on every target."""

from __future__ import annotations

import csv
import io
import json
import sys

import click

from provisioner.cli import cli
from provisioner.cli.common import config_option, load
from provisioner.core.sodeval import Conflict
from provisioner.runtime import RunContext, Targets


def _status(c: Conflict) -> str:
    if c.exception is not None:
        return "excepted"
    return "conflict (exception expired)" if c.expired else "conflict"


def _csv(found: list[Conflict]) -> str:
    buf = io.StringIO()
    cols = ["target", "identity", "role", "policy", "severity", "status", "sides", "causes",
            "exception_approver", "exception_reason", "exception_expires"]
    w = csv.writer(buf)
    w.writerow(cols)
    for c in found:
        exc = c.exception or (c.expired[0] if c.expired else None)
        w.writerow([
            c.target, c.username, c.user, c.policy.id, c.policy.severity, _status(c),
            " x ".join(s.describe() for s in c.sides), " | ".join(h.describe() for h in c.holdings),
            exc.approver if exc else "", exc.reason if exc else "", exc.expires.isoformat() if exc else "",
        ])
    return buf.getvalue()


def _text(found: list[Conflict], policies: int) -> str:
    if not found:
        return f"No segregation-of-duties conflicts ({policies} policy(ies) checked)."
    lines = [f"{len(found)} segregation-of-duties conflict(s):"]
    for c in found:
        lines.append(f"\n[{c.target}] {c.username} ({c.user}): policy {c.policy.id} ({c.policy.severity}) "
                     f"- {_status(c)}")
        lines.append(f"  {c.policy.description}")
        for h in c.holdings:
            lines.append(f"  * {h.describe()}")
        if c.exception is not None:
            lines.append(f"  exception: {c.exception.describe()}")
        for exc in c.expired:
            lines.append(f"  expired exception: {exc.describe()}")
    return "\n".join(lines)


@cli.group()
def sod() -> None:
    """Segregation of duties (policies in mappings/sod/, exceptions in mappings/exceptions/)."""


@sod.command(name="report")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when a conflict has no valid exception.")
def report(config_path: str, fmt: str, detailed_exitcode: bool) -> None:
    """Every conflict present on every target, its cause and any exception."""
    from provisioner.review.campaign import read_inputs
    from provisioner.segregation import conflicts

    cfg = load(config_path)
    ctx = RunContext.manual(cfg, None)
    with Targets(cfg) as targets:
        inp = read_inputs(cfg, ctx, targets)
    found = conflicts(inp.mappings, inp.desired, inp.actual, ctx)
    if fmt == "json":
        click.echo(json.dumps({"policies": [p.id for p in inp.mappings.sod],
                               "conflicts": [{**c.to_json(), "status": _status(c)} for c in found]},
                              indent=2, sort_keys=True))
    elif fmt == "csv":
        click.echo(_csv(found), nl=False)
    else:
        click.echo(_text(found, len(inp.mappings.sod)))
    if detailed_exitcode and any(c.exception is None for c in found):
        sys.exit(2)
