"""provisioner review start | export | import | apply | status | evidence."""

from __future__ import annotations

import json
from pathlib import Path

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.cli.render import render_plan
from provisioner.engine.context import RunContext
from provisioner.engine.installation import load, open_store
from provisioner.engine.record import recorded_run

campaign_option = click.option("--campaign", required=True, help="Campaign id, e.g. 2026-Q4.")


@cli.group()
def review() -> None:
    """Access reviews: certification campaigns with signed worksheets and evidence."""


@review.command()
@config_option
@campaign_option
@click.option("--reviewer", "mode", type=click.Choice(["manager", "owner"]), help="Default: [review] reviewer.")
def start(config_path: str, campaign: str, mode: str | None) -> None:
    """Freeze who has what on every target and assign every item to a reviewer."""
    from provisioner.review.campaign import start_campaign

    cfg = load(config_path)
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store)
    ctx.trigger = "review"
    with recorded_run(ctx, "review", cfg) as summary:
        result = start_campaign(cfg, store, campaign, ctx, mode)  # type: ignore[arg-type]
        summary.update(campaign=campaign, items=result["items"])
    click.echo(f"Campaign {campaign} started: {result['items']} item(s) on {', '.join(result['targets'])}.")
    for reviewer, n in sorted(result["reviewers"].items()):
        click.echo(f"  {reviewer}: {n} item(s)")
    for reviewer in result["unresolved_reviewers"]:
        click.echo(f"warning: reviewer {reviewer!r} is no person in the directory (a job title or unassigned); "
                   "its items cannot be decided until a campaign owner reassigns them on the review page", err=True)


@review.command()
@config_option
@campaign_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the worksheets.")
def export(config_path: str, campaign: str, out: str) -> None:
    """Write one CSV and one HTML worksheet per reviewer."""
    from provisioner.review.store import ReviewStore
    from provisioner.review.worksheets import export as write

    rs = ReviewStore(open_store(load(config_path)))
    rs.campaign(campaign)  # an unknown campaign is an error, not an empty export
    files = write(campaign, rs.states(campaign), Path(out))
    for f in files:
        click.echo(str(f))


@review.command(name="import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--reviewer", help="Who hands the worksheet in (default: the reviewer named in its rows).")
@click.option("--campaign", help="Default: the campaign named in the worksheet.")
def import_cmd(config_path: str, file: str, reviewer: str | None, campaign: str | None) -> None:
    """Import keep/revoke decisions from a worksheet: every row valid, or nothing imported."""
    from provisioner.review.campaign import import_worksheet

    cfg = load(config_path)
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store)
    ctx.trigger = "review"
    result = import_worksheet(store, Path(file), ctx, reviewer, campaign, cfg.review.exclusion_days)
    click.echo(f"Imported {result['decisions']} decision(s) of {result['reviewer']} for campaign "
               f"{result['campaign']} ({result['revoke']} revoke).")


@review.command(name="apply")
@config_option
@campaign_option
@click.option("--dry-run", is_flag=True, help="Show the revocations; change nothing.")
def apply_cmd(config_path: str, campaign: str, dry_run: bool) -> None:
    """Revoke what reviewers decided to revoke, through the normal plan, safety checks and apply."""
    from provisioner.review.campaign import apply_campaign

    cfg = load(config_path)
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, reason=f"access review {campaign}")
    ctx.trigger = "review"
    with recorded_run(ctx, "review-dry-run" if dry_run else "review", cfg) as summary:
        result = apply_campaign(cfg, store, campaign, ctx, dry_run)
        summary.update(campaign=campaign, changes=len(result.plan.changes), flagged=len(result.flagged))
    click.echo(render_plan(result.plan))
    for iid, why in sorted(result.flagged.items()):
        click.echo(f"NOT REVOKED {iid}: needs rule change or exception: {why}")
    for iid in result.gone:
        click.echo(f"already gone {iid}")
    verb = "would revoke" if dry_run else "revoked"
    click.echo(f"\n{len(result.plan.changes)} membership(s) {verb}; {len(result.flagged)} flagged.")


@review.command()
@config_option
@campaign_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(config_path: str, campaign: str, fmt: str) -> None:
    """Coverage per reviewer: decided and open items."""
    from provisioner.review.evidence import status as get

    st = get(open_store(load(config_path)), campaign)
    if fmt == "json":
        click.echo(json.dumps(st, indent=2, sort_keys=True, default=str))
        return
    click.echo(f"Campaign {campaign}: {st['decided']}/{st['items']} decided ({st['coverage_pct']}%), "
               f"{st['open']} open, {st['revoked']} revoked, {st['flagged']} flagged")
    for r in st["reviewers"]:
        click.echo(f"  {r['reviewer']}: {r['decided']}/{r['items']} decided (keep {r['keep']}, "
                   f"revoke {r['revoke']}), {r['open']} open")


@review.command()
@config_option
@campaign_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the report.")
def evidence(config_path: str, campaign: str, out: str) -> None:
    """Evidence for auditors (HTML + CSV), bound to the audit trail's checkpoint."""
    from provisioner.review.evidence import write_evidence

    cfg = load(config_path)
    for f in write_evidence(cfg, open_store(cfg), campaign, Path(out)):
        click.echo(str(f))


@review.command()
@config_option
@click.option("--listen", help="host:port (default: [review] listen, loopback).")
def serve(config_path: str, listen: str | None) -> None:
    """Serve the reviewer web page (directory sign-in; put a TLS reverse proxy in front)."""
    from provisioner.review.webserver import build_app, listen_address, make_review_server

    cfg = load(config_path)
    if listen:
        cfg = cfg.model_copy(update={"review": cfg.review.model_copy(update={"listen": listen})})
    app = build_app(cfg, open_store(cfg))
    host, port = listen_address(cfg.review.listen)
    server = make_review_server(app, host, port)
    click.echo(f"Access-review page on http://{host}:{server.server_port}/ (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
