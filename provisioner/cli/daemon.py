"""``provisioner daemon``: run as a service."""

from __future__ import annotations

import sys

from provisioner.cli.common import config_option
from provisioner.cli.group import cli


@cli.command()
@config_option
def daemon(config_path: str) -> None:
    """Reconcile on a schedule, serve /healthz /readyz /metrics and triggers, until SIGTERM.

    Plans only unless the config says [daemon] mode = "apply".  SIGHUP reloads the
    configuration and rules (keeping the old ones if the new ones do not validate)."""
    from provisioner.daemon.service import Daemon

    sys.exit(Daemon(config_path).run())
