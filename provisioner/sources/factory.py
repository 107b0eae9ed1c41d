"""Build the source adapter a configuration entry asks for."""

from __future__ import annotations

from pathlib import Path

from provisioner.config import EntraSourceConfig, LdapSourceConfig, LdifSourceConfig
from provisioner.errors import ConfigError
from provisioner.sources.base import Source


def build_source(
    cfg: LdapSourceConfig | LdifSourceConfig | EntraSourceConfig, base_dir: Path | None = None
) -> Source:
    """Return the adapter for ``cfg``; ``base_dir`` resolves a relative LDIF path."""
    if isinstance(cfg, LdapSourceConfig):
        from provisioner.sources.ldap import LdapSource

        return LdapSource(cfg)
    if isinstance(cfg, LdifSourceConfig):
        from provisioner.sources.ldif import LdifSource

        return LdifSource(cfg, base_dir)
    if isinstance(cfg, EntraSourceConfig):
        raise ConfigError("entra source not available yet")
    raise ConfigError(f"unknown source type {getattr(cfg, 'type', cfg)!r}")
