"""provisioner report evidence | verify: the quarterly evidence pack."""

from __future__ import annotations

from pathlib import Path

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.engine.installation import load, open_store
from provisioner.errors import ProvisionerError


@cli.group()
def report() -> None:
    """Evidence for examiners and auditors."""


@report.command()
@config_option
@click.option("--quarter", required=True, help="The quarter, e.g. 2026-Q4.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new (empty) directory.")
def evidence(config_path: str, quarter: str, out: str) -> None:
    """Write the signed quarterly evidence pack (HTML + CSV + JSON + signed manifest)."""
    from provisioner.review.pack import write_pack

    cfg = load(config_path)
    store = open_store(cfg)
    try:
        for path in write_pack(cfg, store, quarter, Path(out)):
            click.echo(str(path))
    finally:
        store.close()


class PackInvalid(ProvisionerError):
    exit_code = 1


@report.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--public-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The audit signing key's public half (PEM), obtained independently of the pack.")
def verify(directory: str, public_key: str) -> None:
    """Verify an evidence pack with the public key alone."""
    from provisioner.review.pack import verify_pack
    from provisioner.store.signing import load_public_key

    problems = verify_pack(Path(directory), load_public_key(public_key))
    if problems:
        raise PackInvalid("evidence pack does NOT verify:\n" + "\n".join(f"  {p}" for p in problems))
    click.echo(f"{directory}: evidence pack verified (signature and every file's SHA-256)")
