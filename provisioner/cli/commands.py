"""plan, apply, explain, validate, rules test."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from provisioner.cli import cli
from provisioner.cli.common import config_option, load, open_store, read_plan, recorded_run, write_plan
from provisioner.cli.progress import terminal_progress
from provisioner.cli.render import render_explanation, render_plan
from provisioner.core.explain import explain
from provisioner.core.lifecycle import LifecyclePolicy
from provisioner.core.plan import Plan
from provisioner.core.ruletests import run_cases
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.mappings import load_mappings
from provisioner.pipeline import apply_run, plan_run, refusal, safety_findings
from provisioner.runtime import RunContext, Targets


def _summary(plan: Plan) -> dict[str, object]:
    return {"identities": plan.identities_seen, "changes": len(plan.changes), "by_kind": plan.counts()}


def _emit(plan: Plan, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(plan.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render_plan(plan))


@cli.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Save the plan as JSON for a later apply."
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 0 when nothing changes, 2 when changes are planned."
)
@click.option("--actor", help="Name recorded beside your OS user in the audit trail.")
def plan(config_path: str, fmt: str, out: str | None, detailed_exitcode: bool, actor: str | None) -> None:
    """Show what a reconciliation would change, and why (a dry run)."""
    cfg = load(config_path)
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, actor=actor)
    with recorded_run(ctx, "plan", cfg) as summary, Targets(cfg) as targets, terminal_progress(ctx):
        outcome = plan_run(cfg, ctx, targets)
        result = outcome.plan
        summary.update(_summary(result))
        violations, trips = safety_findings(cfg, result, outcome.actual)
    _emit(result, fmt)
    if out:
        write_plan(result, out)
        click.echo(
            f"Plan saved to {out}; apply it with: provisioner apply -c {config_path} --plan {out}", err=True
        )
    refused = refusal(violations, trips)
    if refused is not None:
        raise refused
    if detailed_exitcode and result.has_changes:
        sys.exit(2)


@cli.command()
@config_option
@click.option(
    "--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), help="A saved plan: the approval."
)
@click.option("--reason", default="", help="Why (ticket, change request); recorded in the audit trail.")
@click.option("--actor", help="Name recorded beside your OS user in the audit trail.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--allow-mass-revocation",
    is_flag=True,
    help="Override the mass-revocation breaker and the source health gate for this run (needs --reason).",
)
def apply(
    config_path: str, plan_path: str | None, reason: str, actor: str | None, fmt: str, allow_mass_revocation: bool
) -> None:
    """Apply a saved plan (refused if the target changed since), or plan and apply now."""
    if allow_mass_revocation and not reason.strip():
        raise click.UsageError("--allow-mass-revocation needs --reason TEXT (recorded in the audit trail)")
    cfg = load(config_path)
    saved = read_plan(plan_path) if plan_path else None
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, reason=reason, actor=actor)
    ctx.allow_mass_revocation = allow_mass_revocation
    with recorded_run(ctx, "apply", cfg) as summary, Targets(cfg) as targets, terminal_progress(ctx):
        result = apply_run(cfg, ctx, targets, saved)
        summary.update(_summary(result))
        summary["saved_plan"] = bool(saved)
    _emit(result, fmt)
    if fmt == "text":
        click.echo(f"\nApply complete: {len(result.changes)} change(s) applied and verified.")


@cli.command(name="explain")
@config_option
@click.argument("user")
def explain_cmd(config_path: str, user: str) -> None:
    """Every role USER gets or loses, the rule and attribute values behind each."""
    cfg = load(config_path)
    ctx = RunContext.manual(cfg, None)
    with Targets(cfg) as targets:  # the very plan a run would make (SoD, lifecycle, privileges)
        outcome = plan_run(cfg, ctx, targets)
    snaps, mappings, result = outcome.snapshots, outcome.mappings, outcome.plan
    needle = user.casefold()
    found = [
        i
        for s in snaps
        for i in s.identities
        if needle in (i.username.casefold(), i.stable_id.casefold(), i.dn.casefold())
    ]
    if not found:
        raise ProvisionerError(f"no identity with username, id or DN {user!r} in {', '.join(s.source for s in snaps)}")
    lifecycle = LifecyclePolicy.from_statuses(cfg.lifecycle.terminated_statuses)
    for ident in found:
        click.echo(render_explanation(explain(ident, mappings.rules, lifecycle, ctx.now)))
    ids = {i.stable_id for i in found}
    names = {u.name for u in outcome.desired.users.values() if u.stable_id in ids}
    click.echo("\nPlanned changes for this identity:")
    any_change = False
    for tp in result.targets:
        for c in tp.changes:
            if c.role in names:
                any_change = True
                why = "; ".join(r.describe() for r in c.reasons)
                click.echo(f"  [{tp.target}] {c.describe()}  <- {why}")
        for n in tp.notices:
            if n.role in names:
                click.echo(f"  [{tp.target}] {n.level.value} {n.code}: {n.message}")
    if not any_change:
        click.echo("  none (the targets already match)")
    withheld = {g: why for u in outcome.desired.users.values() if u.stable_id in ids for g, why in u.excluded.items()}
    if withheld:
        click.echo("\nWithheld by access-review exclusions (the rules grant them; a reviewer revoked them):")
        for group, excluded_why in sorted(withheld.items()):
            click.echo(f"  EXCLUDED {group}  <- {excluded_why.describe()}")
    from provisioner.cli.roles import render_access  # down to tables, through the role catalog

    for ident in found:
        roles = {r: ids_ for r, ids_ in explain(ident, mappings.rules, lifecycle, ctx.now).roles.items()
                 if r not in withheld}
        click.echo(render_access(ident.username, roles, mappings.privileges, outcome.actual))


@cli.command()
@config_option
def validate(config_path: str) -> None:
    """Check the configuration and every mapping file; report every problem at once."""
    cfg = load(config_path)
    m = load_mappings(cfg.mappings_dir)
    click.echo(
        f"OK: {config_path}: {len(cfg.sources)} source(s), {len(cfg.targets)} target(s); "
        f"{m.root}: {len(m.rules.rules)} rule(s), {len(m.catalog.roles)} catalog role(s), {len(m.cases)} rule test(s)"
    )


@cli.group()
def rules() -> None:
    """Work with mapping rules."""


@rules.command(name="test")
@click.option("-c", "--config", "config_path", envvar="PROVISIONER_CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "--mappings",
    "mappings_dir",
    type=click.Path(file_okay=False),
    help="Mapping directory (default: from config, else ./mappings).",
)
def rules_test(config_path: str | None, mappings_dir: str | None) -> None:
    """Run the rule test cases in mappings/tests/."""
    from pathlib import Path

    if mappings_dir:
        root = Path(mappings_dir)
    elif config_path:
        root = load(config_path).mappings_dir
    else:
        root = Path("mappings")
    m = load_mappings(root)
    if not m.cases:
        raise ConfigError(f"{root / 'tests'}: no rule test cases found")
    results = run_cases(m.rules, m.cases, datetime.now(UTC).date())
    failed = [r for r in results if not r.passed]
    for r in failed:
        click.echo(f"FAIL {r.explain()}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)
