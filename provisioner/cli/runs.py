"""``provisioner runs list`` and ``provisioner runs show RUN_ID``: the run history."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.engine.installation import load, open_store
from provisioner.errors import ProvisionerError


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(run: dict[str, Any]) -> str:
    start, end = run.get("started_at"), run.get("finished_at")
    if not start or not end:
        return "-"
    return f"{(end - start).total_seconds():.1f}s"


@cli.group()
def runs() -> None:
    """The run history recorded in the state store."""


@runs.command(name="list")
@config_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def runs_list(config_path: str, limit: int, fmt: str) -> None:
    """The most recent runs, newest first."""
    store = open_store(load(config_path))
    try:
        rows = store.list_runs(limit)
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    if not rows:
        click.echo("no runs recorded")
        return
    click.echo(
        f"{'RUN ID':36}  {'STARTED (UTC)':19}  {'TOOK':>7}  {'TRIGGER':12}  {'MODE':5}  {'OUTCOME':8}  CHANGES  ACTOR"
    )
    for r in rows:
        changes = (r.get("summary") or {}).get("changes", "-")
        click.echo(
            f"{r['run_id']:36}  {_when(r['started_at']):19}  {_duration(r):>7}  {r['trigger']:12}  "
            f"{r['mode']:5}  {r['outcome'] or 'running':8}  {changes!s:>7}  {r['actor']}"
        )


@runs.command(name="show")
@config_option
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def runs_show(config_path: str, run_id: str, fmt: str) -> None:
    """One run: its summary and every audit record it wrote."""
    store = open_store(load(config_path))
    try:
        run = store.get_run(run_id)
        if run is None:
            raise ProvisionerError(f"no run {run_id!r} in the state store (see: provisioner runs list)")
        records = list(store.iter_audit(run_id=run_id))
    finally:
        store.close()
    if fmt == "json":
        out = {**run, "audit": [{"seq": r.seq, "hash": r.hash, **r.content} for r in records]}
        click.echo(json.dumps(out, indent=2, sort_keys=True, default=str))
        return
    click.echo(f"run       {run['run_id']}")
    click.echo(
        f"started   {_when(run['started_at'])} UTC   finished {_when(run['finished_at'])} UTC ({_duration(run)})"
    )
    click.echo(f"trigger   {run['trigger']}   mode {run['mode']}   actor {run['actor']}")
    click.echo(f"outcome   {run['outcome'] or 'running'}")
    if run.get("error"):
        click.echo(f"error     {run['error']}")
    if run.get("summary"):
        click.echo(f"summary   {json.dumps(run['summary'], sort_keys=True, default=str)}")
    click.echo(f"\naudit records ({len(records)}):")
    for r in records:
        c = r.content
        where = f"[{c['target']}] " if c.get("target") else ""
        detail = c.get("reason") or ""
        change = c.get("change") or {}
        what = f"{change.get('kind')} {c.get('role')}" if change else (c.get("role") or "")
        click.echo(f"  #{r.seq:<6} {c['at'][:19]}  {c['kind']:15} {where}{what}  {detail}".rstrip())
