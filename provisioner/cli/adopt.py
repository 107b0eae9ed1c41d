"""``provisioner adopt``: record memberships granted outside provisioner in its ledger."""

from __future__ import annotations

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.ownership.ledger import adoption, instance_adoption
from provisioner.core.values.plan import Plan, TargetPlan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.execute import execute
from provisioner.engine.installation import load, open_store
from provisioner.engine.record import recorded_run
from provisioner.errors import PlanError


@cli.command()
@config_option
@click.option("--target", "target_name", required=True, help="Target the role is on.")
@click.option("--role", "role_name", required=True, help="The managed login role.")
@click.option("--group", "groups", multiple=True, required=True, help="A membership to adopt (repeatable).")
@click.option("--reason", required=True, help="Why (ticket, review); recorded in the audit trail.")
@click.option("--actor", help="Name recorded beside your OS user in the audit trail.")
def adopt(
    config_path: str, target_name: str, role_name: str, groups: tuple[str, ...], reason: str, actor: str | None
) -> None:
    """Adopt memberships that exist but provisioner did not grant (drift): from now on
    provisioner revokes them when no rule grants them.  Audited; nothing else changes."""
    cfg, ctx = _manual_run(config_path, target_name, reason, actor)
    with recorded_run(ctx, "adopt", cfg) as summary, Targets(cfg, {target_name}) as targets:
        state = targets.get(target_name).inspect()
        change, problems = adoption(state, role_name, groups, cfg.instance, reason)
        if change is None:
            raise PlanError("adopt refused; nothing changed:\n" + "\n".join(problems))
        event = ctx.event(EventKind.OVERRIDE, target=target_name, role=role_name, reason=reason, after=change.to_json())
        _apply(cfg, ctx, targets, TargetPlan(target_name, state.fingerprint(frozenset({role_name})), (change,)), event)
        summary.update({"adopted": sorted(set(groups)), "role": role_name, "target": target_name})
    click.echo(f"Adopted {', '.join(sorted(set(groups)))} for {role_name} on {target_name}.")


@cli.command(name="adopt-instance")
@config_option
@click.option("--target", "target_name", required=True, help="Target the roles are on.")
@click.option("--from", "old", required=True, help="The older derived installation name (auto-...).")
@click.option("--reason", required=True, help="Why (ticket, change request); recorded in the audit trail.")
@click.option("--actor", help="Name recorded beside your OS user in the audit trail.")
def adopt_instance(config_path: str, target_name: str, old: str, reason: str, actor: str | None) -> None:
    """Re-mark every role of an older derived installation name (a source moved; the plan
    says instance_changed) with this installation's name.  Audited; nothing else changes."""
    cfg, ctx = _manual_run(config_path, target_name, reason, actor)
    with recorded_run(ctx, "adopt", cfg) as summary, Targets(cfg, {target_name}) as targets:
        state = targets.get(target_name).inspect()
        changes, problems = instance_adoption(state, old, cfg.instance, reason)
        if problems:
            raise PlanError("adopt-instance refused; nothing changed:\n" + "\n".join(problems))
        names = frozenset(c.role for c in changes)
        after = {"from": old, "to": cfg.instance, "roles": sorted(names)}
        event = ctx.event(EventKind.OVERRIDE, target=target_name, reason=reason, after=after)
        _apply(cfg, ctx, targets, TargetPlan(target_name, state.fingerprint(names), tuple(changes)), event)
        summary.update({"adopted_instance": old, "roles": len(names), "target": target_name})
    click.echo(f"Adopted {len(names)} role(s) of installation {old!r} as {cfg.instance!r} on {target_name}.")


def _manual_run(config_path: str, target_name: str, reason: str, actor: str | None) -> tuple[Config, RunContext]:
    """The configuration and a manual run's context, once the reason and the target are valid."""
    if not reason.strip():
        raise click.UsageError("--reason must not be empty")
    cfg = load(config_path)
    if target_name not in {t.name for t in cfg.targets}:
        raise click.UsageError(f"no target named {target_name!r} in {config_path}")
    return cfg, RunContext.manual(cfg, open_store(cfg), reason=reason, actor=actor)


def _apply(cfg: Config, ctx: RunContext, targets: Targets, tp: TargetPlan, event: AuditEvent) -> None:
    """Audit the adoption (an override), then apply its one-target plan."""
    plan = Plan(ctx.now, cfg.digest, (tp,), meta={"run_id": ctx.run_id, "actor": ctx.actor, "trigger": "adopt"})
    ctx.audit([event])
    execute(plan, targets, ctx)
