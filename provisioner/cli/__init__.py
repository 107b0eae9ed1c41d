"""The command-line edge: the only place that calls ``sys.exit``."""

from __future__ import annotations

from provisioner.cli.group import cli

__all__ = ["cli", "main"]


def _register() -> None:
    from provisioner.cli import (  # noqa: F401
        access,
        adopt,
        audit,
        commands,
        daemon,
        report,
        review,
        roles,
        runs,
        sod,
        sources,
    )


_register()


def main() -> None:
    cli(prog_name="provisioner")
