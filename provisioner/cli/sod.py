"""provisioner sod report: every segregation-of-duties conflict on every target."""

from __future__ import annotations

import csv
import io
import json
import sys

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.core.governance.sodeval import Conflict
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.installation import load
from provisioner.review.worksheets import cell


def _status(c: Conflict) -> str:
    if c.withheld:
        return "withheld"
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
        w.writerow([cell(v) for v in (
            c.target, c.username, c.user, c.policy.id, c.policy.severity, _status(c),
            " x ".join(s.describe() for s in c.sides), " | ".join(h.describe() for h in c.holdings),
            exc.approver if exc else "", exc.reason if exc else "", exc.expires.isoformat() if exc else "",
        )])
    return buf.getvalue()


def _text(found: list[Conflict], policies: int, held_back: list[Conflict]) -> str:
    lines = [_withheld_text(held_back)] if held_back else []
    if not found:
        return "\n".join([*lines, f"No segregation-of-duties conflicts present ({policies} policy(ies) checked)."])
    lines.append(f"{len(found)} segregation-of-duties conflict(s):")
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


def _withheld_text(held_back: list[Conflict]) -> str:
    lines = [f"{len(held_back)} request(s) withheld by segregation of duties (the rules ask, nobody decided yet):"]
    for c in held_back:
        lines.append(f"\n[{c.target}] {c.username} ({c.user}): {', '.join(c.withheld)} WITHHELD by policy "
                     f"{c.policy.id} ({c.policy.severity})")
        lines.append(f"  {c.policy.description}")
        lines += [f"  * {h.describe()}" for h in c.holdings]
        lines += [f"  expired exception: {exc.describe()}" for exc in c.expired]
    lines.append("  Decide: change the rule, record an exception, or remove the conflicting access.\n")
    return "\n".join(lines)


@cli.group()
def sod() -> None:
    """Segregation of duties (policies in mappings/sod/, exceptions in mappings/exceptions/)."""


@sod.command(name="report")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option(
    "--detailed-exitcode", is_flag=True,
    help="Exit 2 when a conflict has no valid exception or a request is withheld.",
)
def report(config_path: str, fmt: str, detailed_exitcode: bool) -> None:
    """Every conflict present on every target, every request withheld, causes and exceptions."""
    from provisioner.core.governance.sodrefs import missing_tables
    from provisioner.core.values.plan import NoticeLevel
    from provisioner.engine.run import lifecycle_policy
    from provisioner.engine.segregation import conflicts, foreign_logins, withheld
    from provisioner.review.campaign import read_inputs

    cfg = load(config_path)
    ctx = RunContext.manual(cfg, None)
    with Targets(cfg) as targets:
        inp = read_inputs(cfg, ctx, targets)
    zone = lifecycle_policy(cfg).zone  # an exception is valid through its expiry date there
    found = conflicts(inp.mappings, inp.desired, inp.actual, ctx, zone, cfg.instance)
    held_back = withheld(inp.mappings, inp.desired, inp.actual, ctx, zone)
    skipped = foreign_logins(inp.actual, cfg.instance)
    note = (f"Skipped {skipped} login role(s) of other installations (this one is {cfg.instance!r}): "
            "their own installation's report covers them.\n") if skipped else ""
    refs = [n for state in inp.actual.values() for n in missing_tables(inp.mappings.sod, state)]
    unchecked = [n.message for n in refs if n.level is NoticeLevel.ERROR]  # a broken reference
    limits = [n.message for n in refs if n.level is not NoticeLevel.ERROR]  # what a target cannot express
    if fmt == "json":
        click.echo(json.dumps({"policies": [p.id for p in inp.mappings.sod],
                               "conflicts": [{**c.to_json(), "status": _status(c)} for c in found],
                               "withheld": [{**c.to_json(), "status": _status(c)} for c in held_back],
                               "reference_problems": unchecked,
                               "target_limits": limits,
                               "instance": cfg.instance,
                               "skipped_other_installations": skipped},
                              indent=2, sort_keys=True))
    elif fmt == "csv":
        click.echo(_csv([*held_back, *found]), nl=False)
    else:
        click.echo(
            "".join(f"ERROR {m}\n" for m in unchecked)
            + "".join(f"WARNING {m}\n" for m in limits)
            + _text(found, len(inp.mappings.sod), held_back)
            + (f"\n{note.rstrip()}" if note else "")
        )
    if (unchecked or limits or note) and fmt == "csv":
        problems = "".join(f"ERROR {m}\n" for m in unchecked) + "".join(f"WARNING {m}\n" for m in limits)
        click.echo(problems + note, err=True, nl=False)
    if detailed_exitcode and (unchecked or held_back or any(c.exception is None for c in found)):
        sys.exit(2)
