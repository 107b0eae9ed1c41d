"""plan, apply, explain, validate, rules test."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from provisioner.cli.accountability import authorisation, check_approver, require_reason
from provisioner.cli.common import config_option, read_plan, write_plan
from provisioner.cli.group import cli
from provisioner.cli.progress import terminal_progress
from provisioner.cli.render import render_explanation, render_plan
from provisioner.config import Config
from provisioner.core.governance.sodeval import withheld_count
from provisioner.core.identity.explain import explain
from provisioner.core.identity.ruletests import run_cases
from provisioner.core.reconcile.escalation import ATTRIBUTE_CODE, INCOMPLETE_CODE
from provisioner.core.values.plan import NoticeLevel, Plan
from provisioner.core.values.textsafe import escape_text
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.installation import load, open_store
from provisioner.engine.record import recorded_run
from provisioner.engine.run import apply_run, check, lifecycle_policy, plan_run
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.mappings import load_mappings


def _summary(plan: Plan) -> dict[str, object]:
    return {"identities": plan.identities_seen, "changes": len(plan.changes), "by_kind": plan.counts()}


def _error_notices(plan: Plan) -> int:
    return sum(n.level is NoticeLevel.ERROR for tp in plan.targets for n in tp.notices)


def _emit(plan: Plan, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(plan.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render_plan(plan))


def _exit_if_escalated(plan: Plan) -> None:
    """Exit 3 when a managed role holds SUPERUSER (etc.) by hand (docs/privileges.md)."""
    found = [n for tp in plan.targets for n in tp.notices if n.code in (ATTRIBUTE_CODE, INCOMPLETE_CODE)]
    if found:
        for n in found:
            click.echo(f"error: {n.code}: {n.message}", err=True)
        sys.exit(3)


@cli.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Save the plan as JSON for a later apply."
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help=(
        "Exit 0 when nothing changes, 2 when changes are planned, "
        "3 when error notices exist or segregation of duties withholds a request."
    ),
)
@click.option("--actor", help="Name recorded beside your OS user in the audit trail.")
def plan(config_path: str, fmt: str, out: str | None, detailed_exitcode: bool, actor: str | None) -> None:
    """Show what a reconciliation would change, and why (a dry run)."""
    cfg = load(config_path)
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, actor=actor)
    with recorded_run(ctx, "plan", cfg) as run, Targets(cfg) as targets, terminal_progress(ctx):
        checked = check(cfg, ctx, targets)
        run.keep(checked.outcome.events)  # what planning found; the safety verdict is the exit code
        result = checked.plan
        run.update(_summary(result))
    _emit(result, fmt)
    if out:  # the saved plan names the run that made it (apply records it with the plan's digest)
        meta = {**result.meta, "planning_run": ctx.run_id, "planned_by": ctx.actor}
        write_plan(replace(result, meta=meta), out, cfg)
        click.echo(
            f"Plan saved to {out}; apply it with: provisioner apply -c {config_path} --plan {out}", err=True
        )
    if checked.refused is not None:
        raise checked.refused
    _exit_if_escalated(result)
    errors = _error_notices(result)
    if errors:
        click.echo(f"{errors} error notice(s) in this plan (bad directory data, partial reads ...)", err=True)
    held_back = withheld_count(result)
    if held_back:
        click.echo(f"{held_back} request(s) withheld by segregation of duties", err=True)
    if detailed_exitcode and (errors or held_back):
        sys.exit(3)
    if detailed_exitcode and result.has_changes:
        sys.exit(2)


@cli.command()
@config_option
@click.option(
    "--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), help="A saved plan: the approval."
)
@click.option("--reason", default="", help="Why: the ticket or change request (required; [audit] reason_pattern).")
@click.option("--approved-by", "approver", help="Who approved this change (not you); recorded in the audit trail.")
@click.option("--actor", help="Name recorded beside your OS user in the audit trail.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--allow-mass-revocation",
    is_flag=True,
    help="Override the mass-revocation breaker and the source health gate for this run (needs --reason).",
)
def apply(
    config_path: str,
    plan_path: str | None,
    reason: str,
    approver: str | None,
    actor: str | None,
    fmt: str,
    allow_mass_revocation: bool,
) -> None:
    """Apply a saved plan (refused if the target changed since), or plan and apply now."""
    if allow_mass_revocation and not reason.strip():
        raise click.UsageError("--allow-mass-revocation needs --reason TEXT (recorded in the audit trail)")
    cfg = load(config_path)
    require_reason(cfg, reason)
    saved = read_plan(plan_path, cfg) if plan_path else None
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, reason=reason, actor=actor)
    check_approver(ctx.actor, approver)
    ctx.allow_mass_revocation = allow_mass_revocation
    with recorded_run(ctx, "apply", cfg) as summary, Targets(cfg) as targets, terminal_progress(ctx):
        ctx.audit([authorisation(ctx, saved, plan_path, approver)])
        result = apply_run(cfg, ctx, targets, saved)
        summary.update(_summary(result))
        summary["saved_plan"] = bool(saved)
    _emit(result, fmt)
    if fmt == "text":
        click.echo(f"\nApply complete: {len(result.changes)} change(s) applied and verified.")
    errors = _error_notices(result)
    if errors:
        click.echo(f"{errors} error notice(s) in the applied plan (bad directory data, partial reads ...)", err=True)
    _exit_if_escalated(result)


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
    lifecycle = lifecycle_policy(cfg)
    # the run's own verdict on each identity (shared stable ids, login_for = "granted" ...), as planned
    verdicts = {(u.source, u.stable_id): u for u in outcome.desired.users.values()}
    for ident in found:
        exp = explain(ident, mappings.rules, lifecycle, ctx.now)
        planned = verdicts.get((ident.source, ident.stable_id))
        if planned is not None:
            exp = replace(exp, lifecycle=planned.lifecycle, lifecycle_reason=planned.lifecycle_reason)
        click.echo(render_explanation(exp))
    ids = {i.stable_id for i in found}
    names = {u.name for u in outcome.desired.users.values() if u.stable_id in ids}
    click.echo("\nPlanned changes for this identity:")
    any_change = False
    for tp in result.targets:
        for c in tp.changes:
            if c.role in names:
                any_change = True
                why = "; ".join(r.describe() for r in c.reasons)
                click.echo(escape_text(f"  [{tp.target}] {c.describe(tp.dialect)}  <- {why}"))
        for n in tp.notices:
            if n.role in names or (n.role is None and any(_names(i.username, n.message) for i in found)):
                click.echo(escape_text(f"  [{tp.target}] {n.level.value} {n.code}: {n.message}"))
    if not any_change:
        errors = sum(
            1 for tp in result.targets for n in tp.notices if n.role in names and n.level.value == "error"
        )
        tail = f"; {errors} error notice(s) above: requests withheld or refused" if errors else ""
        click.echo(f"  none (the targets already match{tail})" if not errors else f"  none{tail}")
    excluded = {g: why for u in outcome.desired.users.values() if u.stable_id in ids for g, why in u.excluded.items()}
    if excluded:
        click.echo("\nWithheld by access-review exclusions (the rules grant them; a reviewer revoked them):")
        for group, excluded_why in sorted(excluded.items()):
            click.echo(escape_text(f"  EXCLUDED {group}  <- {excluded_why.describe()}"))
    from provisioner.cli.roles import render_access  # down to tables: effective access, every path
    from provisioner.engine.segregation import withheld

    held_back = withheld(mappings, outcome.desired, outcome.actual, ctx)
    plans = {tp.target: tp for tp in result.targets}
    for ident in found:
        logins = [u.name for u in outcome.desired.users.values() if u.stable_id == ident.stable_id]
        for target, state in outcome.actual.items():
            for login in logins:
                click.echo(render_access(ident.username, login, plans.get(target), state, outcome.desired,
                                         mappings.privileges, held_back))


def _names(username: str, message: str) -> bool:
    """``message`` names ``username`` as a word of its own (never "eve" inside "everything")."""
    return re.search(rf"(?<![\w.-]){re.escape(username)}(?![\w.-])", message) is not None


@cli.command()
@config_option
@click.option("--online", is_flag=True, help="Also look for the configured role names on the targets.")
def validate(config_path: str, online: bool) -> None:
    """Check the configuration and every mapping file; report every problem at once."""
    from pathlib import Path

    from provisioner.validation import validate as check

    report = check(Path(config_path), _target_roles if online else None)
    for line in report.errors:
        click.echo(escape_text(f"error: {line}"), err=True)
    for line in report.warnings:
        click.echo(escape_text(f"warning: {line}"), err=True)
    if report.errors:
        raise ConfigError(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    cfg, m = report.config, report.mappings
    assert cfg is not None and m is not None
    click.echo(
        f"OK: {config_path}: {len(cfg.sources)} source(s), {len(cfg.targets)} target(s); "
        f"{m.root}: {len(m.rules.rules)} rule(s), {len(m.catalog.roles)} catalog role(s), {len(m.cases)} rule test(s)"
        + (f"; {len(report.warnings)} warning(s)" if report.warnings else "")
    )
    how = "derived from the sources; set [provisioner] instance to pin it" if cfg.instance_derived else "configured"
    click.echo(f"installation: {cfg.instance} ({how})")


def _target_roles(cfg: Config) -> set[str]:
    with Targets(cfg) as targets:
        return {name for state in targets.inspect_all().values() for name in state.roles}


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

    cfg = load(config_path) if config_path else None
    zone = cfg.lifecycle.timezone if cfg else "UTC"  # today as the runs see it: the date in [lifecycle] timezone
    root = Path(mappings_dir) if mappings_dir else cfg.mappings_dir if cfg else Path("mappings")
    m = load_mappings(root)
    if not m.cases:
        raise ConfigError(f"{root / 'tests'}: no rule test cases found")
    results = run_cases(m.rules, m.cases, datetime.now(ZoneInfo(zone)).date())
    failed = [r for r in results if not r.passed]
    for r in failed:
        click.echo(f"FAIL {r.explain()}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)
