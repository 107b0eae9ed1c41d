"""Opening an installation: its configuration (and logging), its state store with the audit
signer and checkpoint shipper, and where a relative state path resolves."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from provisioner.config import Config, load_config
from provisioner.errors import ConfigError
from provisioner.logs import configure
from provisioner.store.shipping import shipper
from provisioner.store.signer import Signer
from provisioner.store.signing import load_signing_key
from provisioner.store.state import StateStore


def load(config_path: str) -> Config:
    cfg = load_config(config_path)
    configure(cfg.provisioner.log_format, cfg.provisioner.log_level)
    return cfg


def state_url(cfg: Config) -> URL:
    """``[state] url`` with ``[state] password`` set on the URL object (escaped, never spliced into text)."""
    try:
        url = make_url(cfg.state.url)
    except ArgumentError as exc:
        raise ConfigError(f"{cfg.path}: [state] url is not a database URL: {exc}") from None
    if cfg.state.password is not None:
        url = url.set(password=cfg.state.password.resolve())
    return url


def audit_signer(cfg: Config) -> Signer | None:
    return Signer(load_signing_key(cfg.audit.signing_key)) if cfg.audit.signing_key is not None else None


def open_store(cfg: Config) -> StateStore:
    """The state store of ``cfg``; ``[state] password`` goes into the URL object, never into a string."""
    return StateStore(
        state_url(cfg),
        base_dir=state_dir(cfg),
        signer=audit_signer(cfg),
        on_checkpoint=shipper(cfg.audit, cfg.base_dir),
    )


def state_dir(cfg: Config) -> Path:
    """Where a relative SQLite state path resolves: systemd's ``$STATE_DIRECTORY``
    (``StateDirectory=``, writable) when set, else the configuration file's directory."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(given) if given and Path(given).is_absolute() else cfg.base_dir
