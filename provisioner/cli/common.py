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
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from provisioner.alerts import deliver_run_alerts, dispatch_alerts
from provisioner.config import Config, load_config
from provisioner.core.alerts import chain_broken_alert
from provisioner.core.audit import AuditEvent, EventKind
from provisioner.core.plan import Plan
from provisioner.errors import ConfigError, PlanError, ProvisionerError, SafetyViolation, StalePlan
from provisioner.logs import configure, log
from provisioner.runtime import RunContext
from provisioner.store import plansign
from provisioner.store.audit import AuditTampered
from provisioner.store.shipping import shipper
from provisioner.store.signer import Signer
from provisioner.store.signing import load_signing_key
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


@contextmanager
def recorded_run(ctx: RunContext, mode: str, cfg: Config | None = None) -> Iterator[dict[str, Any]]:
    """Record the run in the run history and the audit trail, whatever happens.

    With ``[audit] signing_key`` every append verifies the chain after the newest
    signed checkpoint and signs what it adds (store/audit.py); a broken chain stops
    the run before it changes anything (:class:`AuditTampered`, exit 1, critical
    alert).  With ``cfg``, the run's records are evaluated for alerts at the end
    (never for a manual ``plan``: a dry run alerts nobody).
    """
    store = ctx.store
    assert store is not None
    try:
        store.audit.check_signed()
    except AuditTampered as exc:
        exc.run_id = ctx.run_id
        tampered(ctx, cfg, exc)
        raise
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
        outcome = "refused" if kind is EventKind.PLAN_REFUSED else "failed"
        _close(ctx, cfg, mode, [ctx.event(kind, reason=str(exc), after={"error": type(exc).__name__})],
               outcome, summary, str(exc))
        log.error("run_failed", run_id=ctx.run_id, error=type(exc).__name__, message=str(exc))
        raise
    except Exception as exc:
        _close(ctx, cfg, mode, [ctx.event(EventKind.RUN_FAILED, reason=repr(exc), after={"error": type(exc).__name__})],
               "failed", summary, repr(exc))
        raise
    outcome = summary.pop("_outcome", "ok")
    _close(ctx, cfg, mode, [ctx.event(EventKind.RUN_FINISHED, reason=outcome, after=summary)], outcome, summary, None)
    log.info("run_summary", run_id=ctx.run_id, mode=mode, outcome=outcome, **summary)


def _close(
    ctx: RunContext,
    cfg: Config | None,
    mode: str,
    events: list[AuditEvent],
    outcome: str,
    summary: dict[str, Any],
    error: str | None,
) -> None:
    """The run's last records, its history row (chained as ``run_recorded``), then its alerts."""
    store = ctx.store
    assert store is not None
    try:
        ctx.audit(events)
        row = store.finish_run(ctx.run_id, outcome, summary, error)
        ctx.audit([ctx.event(EventKind.RUN_RECORDED, reason=outcome, after=row)])
    except AuditTampered as exc:  # the chain was tampered with during the run: nothing more is signed
        tampered(ctx, cfg, exc)
        raise
    close_run(ctx, cfg, mode)


def tampered(ctx: RunContext, cfg: Config | None, exc: AuditTampered) -> None:
    """A broken chain: logged, a critical alert (never rate-limited), the run history says so."""
    log.critical("audit_chain_broken", run_id=ctx.run_id, message=str(exc))
    if cfg is not None and ctx.store is not None:
        dispatch_alerts([chain_broken_alert(str(exc))], cfg.alerts, ctx.store)


def close_run(ctx: RunContext, cfg: Config | None, mode: str) -> None:
    """Send the alerts the run's records call for (none for a manual plan); never raises."""
    store = ctx.store
    if store is None or cfg is None:
        return
    if mode == "plan" and ctx.trigger == "manual":
        return
    _, counts = deliver_run_alerts(cfg, store, ctx.run_id)
    if ctx.trigger == "manual" and counts.total:
        click.echo(counts.summary_line(), err=True)


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
