"""Shared CLI plumbing: the ``--config`` option and saved plans (the run bookkeeping is the engine's)."""

from __future__ import annotations

import json

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.config import Config
from provisioner.core.values.plan import Plan
from provisioner.errors import PlanError
from provisioner.store import plansign
from provisioner.store.signing import load_signing_key

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    envvar="PROVISIONER_CONFIG",
    required=True,
    type=click.Path(dir_okay=False),
    help="Configuration file (or $PROVISIONER_CONFIG).",
)


def _plan_key(cfg: Config | None) -> Ed25519PrivateKey | None:
    if cfg is None or cfg.audit.signing_key is None:
        return None
    return load_signing_key(cfg.audit.signing_key)


def read_plan(path: str, cfg: Config | None = None) -> Plan:
    """With ``[audit] signing_key`` configured, only a plan that key signed is read."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: not a usable saved plan: {exc}") from exc
    key = _plan_key(cfg)
    if key is not None:
        why = plansign.problem(data, key)
        if why is not None:
            raise PlanError(f"{path}: saved plan refused: {why}")
    try:
        return Plan.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{path}: not a usable saved plan: {exc}") from exc


def write_plan(plan: Plan, path: str, cfg: Config | None = None) -> None:
    """Signed with the audit key when ``[audit] signing_key`` is configured."""
    data = plan.to_json()
    key = _plan_key(cfg)
    if key is not None:
        data = plansign.sign(data, key)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
