"""Building a target adapter from its configuration."""

from __future__ import annotations

from provisioner.config import MysqlTargetConfig, PostgresTargetConfig
from provisioner.errors import ConfigError
from provisioner.targets.base import Target


def build_target(cfg: PostgresTargetConfig | MysqlTargetConfig) -> Target:
    """The adapter for ``cfg`` (dispatching on ``cfg.type``); nothing connects yet."""
    if cfg.type == "postgresql":
        from provisioner.targets.postgres import PostgresTarget

        return PostgresTarget(cfg)
    if cfg.type == "mysql":
        from provisioner.targets.mysql import MysqlTarget

        return MysqlTarget(cfg)
    raise ConfigError(f"target {cfg.name}: unsupported target type {cfg.type!r}")
