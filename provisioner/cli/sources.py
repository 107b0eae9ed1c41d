"""``provisioner sources check``: does every configured source connect, how much
does it see, and what do its identities look like after mapping?"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.config import Config
from provisioner.core.identity.groupref import referenced_groups
from provisioner.core.identity.lifecycle import LifecyclePolicy, classify
from provisioner.core.values.model import Identity, SourceSnapshot
from provisioner.core.values.textsafe import escape_text
from provisioner.engine.installation import load
from provisioner.engine.run import lifecycle_policy
from provisioner.errors import ProvisionerError
from provisioner.mappings import load_mappings
from provisioner.sources.factory import build_source

SAMPLE_ATTRIBUTES = ("department", "title", "employee_type", "status", "hire_date", "leave_date")


@cli.group()
def sources() -> None:
    """Inspect the configured identity sources."""


def _rule_groups(cfg: Config) -> tuple[frozenset[str], str | None]:
    try:
        return referenced_groups(load_mappings(cfg.mappings_dir).rules), None
    except ProvisionerError as exc:
        return frozenset(), f"mappings not loaded ({str(exc).splitlines()[0]}); no group membership resolved"


def _describe(ident: Identity, policy: LifecyclePolicy, now: datetime) -> list[str]:
    state, why, _ = classify(ident, now, policy)
    attrs = ", ".join(
        f"{name}={'|'.join(ident.attributes[name])}" for name in SAMPLE_ATTRIBUTES if ident.attributes.get(name)
    )
    groups = sorted(g for g in ident.groups if "=" not in g and len(g) < 64)
    return [
        f"  - {ident.username}  (id {ident.stable_id})",
        f"      lifecycle: {state.value} ({why.describe()})",
        f"      attributes: {attrs or '-'}",
        f"      groups: {', '.join(groups) or '-'}",
    ]


def _report(snap: SourceSnapshot, seconds: float, sample: int, policy: LifecyclePolicy) -> None:
    for error in snap.errors:
        click.echo(escape_text(f"  error: {error}"))
    click.echo(f"  identities: {len(snap.identities)}   groups: {snap.group_count}   read in {seconds:.2f} s")
    for warning in snap.warnings[:10]:
        click.echo(escape_text(f"  warning: {warning}"))
    if len(snap.warnings) > 10:
        click.echo(f"  ... and {len(snap.warnings) - 10} more warning(s)")
    if sample and snap.identities:
        click.echo(f"  sample of {min(sample, len(snap.identities))} mapped identit(ies):")
        now = datetime.now(UTC)
        for ident in snap.identities[:sample]:
            for line in _describe(ident, policy, now):
                click.echo(escape_text(line))


@sources.command(name="check")
@config_option
@click.option("--source", "only", help="Check only this source (by name).")
@click.option("--sample", default=3, show_default=True, type=click.IntRange(0), help="Mapped identities to show.")
def check(config_path: str, only: str | None, sample: int) -> None:
    """Connect to every source, count identities and groups, show a sample (exit 1 on any failure)."""
    cfg = load(config_path)
    chosen = [s for s in cfg.sources if only is None or s.name == only]
    if not chosen:
        names = ", ".join(s.name for s in cfg.sources)
        raise ProvisionerError(f"{cfg.path}: no source named {only!r} (configured: {names})")
    groups, note = _rule_groups(cfg)
    policy = lifecycle_policy(cfg)
    failed = 0
    for scfg in chosen:
        click.echo(f"source {scfg.name} ({scfg.type}):")
        if note and scfg.type == "entra":
            click.echo(f"  note: {note}")
        started = time.perf_counter()
        try:
            source = build_source(scfg, referenced_groups=groups)
            try:
                snap = source.read()
            finally:
                source.close()
        except ProvisionerError as exc:
            failed += 1
            click.echo(escape_text(f"  FAILED ({type(exc).__name__}): {exc}"))
            continue
        _report(snap, time.perf_counter() - started, sample, policy)
        if not snap.identities:
            failed += 1
            click.echo("  FAILED: no identities (a run would refuse to plan from this source)")
    click.echo(f"{len(chosen) - failed} of {len(chosen)} source(s) ok")
    if failed:
        sys.exit(1)
