"""The ``provisioner`` command group; every command module registers on it."""

from __future__ import annotations

import sys
from typing import Any

import click

from provisioner import __version__
from provisioner.errors import ProvisionerError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProvisionerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="provisioner")
def cli() -> None:
    """Sync identities from LDAP / AD / Entra ID into database roles, by rules."""
