"""Shared CLI plumbing: config loading, the state store, run bookkeeping."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.alerts import run_alerts
from provisioner.config import Config, load_config
from provisioner.core.audit import EventKind
from provisioner.core.plan import Plan
from provisioner.errors import PlanError, ProvisionerError, SafetyViolation, StalePlan
from provisioner.logs import configure, log
from provisioner.runtime import RunContext
from provisioner.store.signing import load_signing_key, sign_head
from provisioner.store.state import StateStore

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    envvar="PROVISIONER_CONFIG",
    required=True,
    type=click.Path(dir_okay=False),
    help="Configuration file (or $PROVISIONER_CONFIG).",
)


def load(config_path: str) -> Config:
    cfg = load_config(config_path)
    configure(cfg.provisioner.log_format, cfg.provisioner.log_level)
    return cfg


def open_store(cfg: Config) -> StateStore:
    url = cfg.state.url
    if cfg.state.password is not None and "@" in url and ":@" in url:
        url = url.replace(":@", ":" + cfg.state.password.resolve() + "@", 1)
    return StateStore(url, base_dir=state_dir(cfg))


def state_dir(cfg: Config) -> Path:
    """Where a relative SQLite state path resolves: systemd's ``$STATE_DIRECTORY``
    (``StateDirectory=``, writable) when set, else the configuration file's directory."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(given) if given and Path(given).is_absolute() else cfg.base_dir


@contextmanager
def recorded_run(ctx: RunContext, mode: str, cfg: Config | None = None) -> Iterator[dict[str, Any]]:
    """Record the run in the run history and the audit trail, whatever happens.

    With ``cfg``, every run also ends with a signed audit checkpoint (``[audit]
    signing_key``) and the alerts its records call for (``[alerts]``).
    """
    store = ctx.store
    assert store is not None
    key = load_signing_key(cfg.audit.signing_key) if cfg and cfg.audit.signing_key else None
    store.start_run(ctx.trigger, ctx.actor, mode, run_id=ctx.run_id)
    summary: dict[str, Any] = {}
    try:
        yield summary
    except ProvisionerError as exc:
        exc.run_id = exc.run_id or ctx.run_id
        kind = (
            EventKind.PLAN_REFUSED
            if isinstance(exc, (StalePlan, SafetyViolation, PlanError))
            else EventKind.RUN_FAILED
        )
        ctx.audit([ctx.event(kind, reason=str(exc), after={"error": type(exc).__name__})])
        store.finish_run(
            ctx.run_id, "refused" if kind is EventKind.PLAN_REFUSED else "failed", summary, str(exc)
        )
        log.error("run_failed", run_id=ctx.run_id, error=type(exc).__name__, message=str(exc))
        close_run(ctx, cfg, key)
        raise
    except Exception as exc:
        ctx.audit([ctx.event(EventKind.RUN_FAILED, reason=repr(exc), after={"error": type(exc).__name__})])
        store.finish_run(ctx.run_id, "failed", summary, repr(exc))
        close_run(ctx, cfg, key)
        raise
    outcome = summary.pop("_outcome", "ok")
    ctx.audit([ctx.event(EventKind.RUN_FINISHED, reason=outcome, after=summary)])
    store.finish_run(ctx.run_id, outcome, summary)
    close_run(ctx, cfg, key)
    log.info("run_summary", run_id=ctx.run_id, mode=mode, outcome=outcome, **summary)


def close_run(ctx: RunContext, cfg: Config | None, key: Ed25519PrivateKey | None) -> None:
    """Sign a checkpoint of the chain's head, then send the run's alerts; never raises."""
    store = ctx.store
    if store is None or cfg is None:
        return
    if key is not None:
        try:
            stored = sign_head(store.audit, key)
            log.info("audit_checkpoint", run_id=ctx.run_id, **stored.checkpoint.payload())
        except Exception as exc:  # the run's outcome stands; the next run signs again
            log.error("audit_checkpoint_failed", run_id=ctx.run_id, error=type(exc).__name__, message=str(exc))
    run_alerts(cfg, store, ctx.run_id)


def read_plan(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return Plan.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{path}: not a usable saved plan: {exc}") from exc


def write_plan(plan: Plan, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(plan.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
