"""Deliver alerts: a structlog event always, then every configured channel,
deduplicated and rate-limited with state in the state store.  Never raises."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from provisioner.alerts.channels import Channel, ChannelFailed, EmailChannel, WebhookChannel
from provisioner.config import AlertsConfig
from provisioner.core.alerts import Alert
from provisioner.logs import log
from provisioner.store.state import StateStore

DEDUP_KEY = "alerts:dedup"
RATE_KEY = "alerts:rate:"


def build_channels(cfg: AlertsConfig) -> list[Channel]:
    channels: list[Channel] = [WebhookChannel(w, cfg.timeout) for w in cfg.webhooks]
    if cfg.email is not None:
        channels.append(EmailChannel(cfg.email, cfg.timeout))
    return channels


def dispatch_alerts(
    alerts: Sequence[Alert],
    cfg: AlertsConfig,
    store: StateStore | None,
    *,
    channels: Sequence[Channel] | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Send ``alerts``; return counts (sent, suppressed, rate_limited, failed). Never raises."""
    counts = {"sent": 0, "suppressed": 0, "rate_limited": 0, "failed": 0}
    if not alerts:
        return counts
    now = now or datetime.now(UTC)
    try:
        chans = list(channels) if channels is not None else build_channels(cfg)
        seen = _load(store, DEDUP_KEY, {})
    except Exception as exc:
        log.error("alert_dispatch_failed", error=type(exc).__name__, message=str(exc))
        return counts
    dedup = timedelta(seconds=cfg.dedup_window)
    seen = {k: v for k, v in seen.items() if _age(v, now) < dedup}
    for alert in alerts:
        duplicate = alert.key in seen
        log.warning(
            "alert",
            severity=alert.severity.value,
            key=alert.key,
            title=alert.title,
            body=alert.body,
            facts=dict(alert.facts),
            duplicate=duplicate,
        )
        if duplicate:
            counts["suppressed"] += 1
            continue
        seen[alert.key] = now.isoformat()
        for chan in chans:
            counts[_send(chan, alert, cfg, store, now)] += 1
    _save(store, DEDUP_KEY, seen)
    return counts


def _send(chan: Channel, alert: Alert, cfg: AlertsConfig, store: StateStore | None, now: datetime) -> str:
    key = RATE_KEY + chan.name
    recent = [t for t in _load(store, key, []) if _age(t, now) < timedelta(hours=1)]
    if len(recent) >= cfg.max_per_hour:
        log.warning("alert_rate_limited", channel=chan.name, key=alert.key, max_per_hour=cfg.max_per_hour)
        return "rate_limited"
    recent.append(now.isoformat())
    _save(store, key, recent)
    try:
        chan.send(alert)
    except ChannelFailed as exc:
        log.error("alert_channel_failed", channel=chan.name, key=alert.key, error=str(exc))
        return "failed"
    except Exception as exc:  # a channel bug must not fail the run either
        log.error("alert_channel_failed", channel=chan.name, key=alert.key, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    log.info("alert_sent", channel=chan.name, key=alert.key)
    return "sent"


def _age(stamp: Any, now: datetime) -> timedelta:
    try:
        at = datetime.fromisoformat(str(stamp))
    except ValueError:
        return timedelta.max
    return now - (at if at.tzinfo else at.replace(tzinfo=UTC))


def _load(store: StateStore | None, key: str, default: Any) -> Any:
    if store is None:
        return default
    try:
        value = store.get(key, default)
    except Exception as exc:
        log.error("alert_state_failed", key=key, error=type(exc).__name__, message=str(exc))
        return default
    return value if isinstance(value, type(default)) else default


def _save(store: StateStore | None, key: str, value: Any) -> None:
    if store is None:
        return
    try:
        store.put(key, value)
    except Exception as exc:
        log.error("alert_state_failed", key=key, error=type(exc).__name__, message=str(exc))
