"""Build the source adapter a configuration entry asks for."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from provisioner.config import EntraSourceConfig, LdapSourceConfig, LdifSourceConfig
from provisioner.core.identity.needs import ALL, SourceNeeds
from provisioner.errors import ConfigError
from provisioner.sources.base import Source
from provisioner.sources.memory import SourceMemory


class KeyValueStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


def build_source(
    cfg: LdapSourceConfig | LdifSourceConfig | EntraSourceConfig,
    base_dir: Path | None = None,
    *,
    store: KeyValueStore | None = None,
    referenced_groups: Iterable[str] = (),
    needs: SourceNeeds = ALL,
    memory: SourceMemory | None = None,
) -> Source:
    """Return the adapter for ``cfg``; ``base_dir`` resolves a relative LDIF path.

    ``store`` (the state store) lets incremental sources (Entra delta queries)
    continue from their last read; ``referenced_groups`` are the group names the
    rules test, for sources that resolve membership only for those; ``needs``
    the canonical attributes the run depends on (LDAP asks for those only); ``memory``
    what the owner keeps between reads (the daemon's warm state; None: nothing kept)."""
    if isinstance(cfg, LdapSourceConfig):
        from provisioner.sources.ldap import LdapSource

        return LdapSource(cfg, store=store, needs=needs, referenced_groups=referenced_groups, memory=memory)
    if isinstance(cfg, LdifSourceConfig):
        from provisioner.sources.ldif import LdifSource

        return LdifSource(cfg, base_dir)
    if isinstance(cfg, EntraSourceConfig):
        from provisioner.sources.entra import EntraSource

        return EntraSource(cfg, store, referenced_groups)
    raise ConfigError(f"unknown source type {getattr(cfg, 'type', cfg)!r}")
