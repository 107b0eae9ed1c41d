"""Building a target adapter from its configuration."""

from __future__ import annotations

from provisioner.config import MemoryTargetConfig, MysqlTargetConfig, PostgresTargetConfig
from provisioner.errors import ConfigError
from provisioner.targets.base import Target


def build_target(cfg: PostgresTargetConfig | MysqlTargetConfig | MemoryTargetConfig) -> Target:
    """The adapter for ``cfg`` (dispatching on ``cfg.type``); nothing connects yet."""
    if cfg.type == "postgresql":
        from provisioner.targets.postgres import PostgresTarget

        return PostgresTarget(cfg)
    if cfg.type == "mysql":
        from provisioner.targets.mysql import MysqlTarget

        return MysqlTarget(cfg)
    if cfg.type == "memory":
        from provisioner.targets.memory import MemoryTarget

        return MemoryTarget.from_config(cfg)
    raise ConfigError(f"target {cfg.name}: unsupported target type {cfg.type!r}")
