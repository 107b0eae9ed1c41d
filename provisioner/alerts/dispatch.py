"""Deliver alerts through the durable outbox in the state store.  Never raises.

Every alert is logged (``alert``, at info level: the details live in the log),
queued once per channel unless the same key was queued within the dedup window,
and the channel's due queue is drained: each row is tried up to
``[alerts] retry_attempts`` times with exponential backoff and marked sent only
when the channel accepted it; otherwise it waits for the next run (backoff
doubling, at most an hour).  Non-critical alerts over ``max_per_hour`` are held
and summarised in one digest per channel and hour; critical alerts are never
held.  A channel that keeps failing is reported on the other channels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from provisioner.alerts.channels import Channel, ChannelFailed, EmailChannel, WebhookChannel
from provisioner.config import AlertsConfig
from provisioner.core.governance.alerts import Alert, Severity, delivery_failed_alert, held_back_digest
from provisioner.logs import log
from provisioner.store.outbox import Outbox, OutboxRow
from provisioner.store.state import StateStore

MAX_BACKOFF = timedelta(hours=1)
DIGEST_PREFIX = "rate_limited_digest:"


@dataclass(slots=True)
class DispatchCounts:
    sent: int = 0
    suppressed: int = 0
    held: int = 0
    queued: int = 0
    """Still waiting in the outbox after this dispatch (a channel is down)."""
    failed: int = 0
    """Failed delivery attempts in this dispatch."""
    down: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.sent + self.suppressed + self.held + self.queued

    def summary_line(self) -> str:
        parts = [f"{self.sent} sent"]
        if self.queued:
            parts.append(f"{self.queued} waiting for retry ({', '.join(self.down)} failing)")
        if self.held:
            parts.append(f"{self.held} held back by the rate cap")
        if self.suppressed:
            parts.append(f"{self.suppressed} duplicate(s) suppressed")
        return "Alerts: " + ", ".join(parts) + " (details in the log)"


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
    sleep: Callable[[float], None] = time.sleep,
) -> DispatchCounts:
    """Queue ``alerts`` and drain every channel's due outbox rows.  Never raises."""
    counts = DispatchCounts()
    now = now or datetime.now(UTC)
    try:
        chans = list(channels) if channels is not None else build_channels(cfg)
    except Exception as exc:
        log.error("alert_dispatch_failed", error=type(exc).__name__, message=str(exc))
        return counts
    for alert in alerts:
        log.info("alert", severity=alert.severity.value, key=alert.key, title=alert.title, body=alert.body,
                 facts=dict(alert.facts))
    if store is None:  # no state store (never a recorded run): best effort, not durable
        for alert in alerts:
            for chan in chans:
                ok, failures, error = _attempts(chan, alert, cfg, sleep)
                counts.failed += failures
                counts.sent += ok
                if not ok:
                    log.error("alert_channel_failed", channel=chan.name, key=alert.key, attempts=failures,
                              error=error, durable=False)
        return counts
    try:
        _queue(store.outbox, alerts, chans, cfg, now, counts)
        _drain(store.outbox, chans, cfg, now, sleep, counts)
    except Exception as exc:  # the outbox is the state store: a store outage must not fail the run
        log.error("alert_dispatch_failed", error=type(exc).__name__, message=str(exc))
    return counts


def _queue(
    box: Outbox, alerts: Sequence[Alert], chans: Sequence[Channel], cfg: AlertsConfig, now: datetime,
    counts: DispatchCounts,
) -> None:
    since = now - timedelta(seconds=cfg.dedup_window)
    for alert in alerts:
        for chan in chans:
            if box.recently_queued(alert.key, chan.name, since, now):
                log.info("alert_duplicate", channel=chan.name, key=alert.key)
                counts.suppressed += 1
                continue
            box.enqueue(chan.name, alert.key, alert.severity.value, alert.to_json(), now)


def _drain(
    box: Outbox, chans: Sequence[Channel], cfg: AlertsConfig, now: datetime, sleep: Callable[[float], None],
    counts: DispatchCounts,
) -> None:
    down: dict[str, tuple[int, str]] = {}
    for chan in chans:
        held = _drain_channel(box, chan, cfg, now, sleep, counts, down)
        if held and chan.name not in down:
            digest = held_back_digest(chan.name, held, now.strftime("%Y-%m-%dT%H"))
            if not box.recently_queued(digest.key, chan.name, now - timedelta(hours=1), now):
                box.enqueue(chan.name, digest.key, digest.severity.value, digest.to_json(), now)
                _drain_channel(box, chan, cfg, now, sleep, counts, down)
    # a failing channel is reported on the others (once per dedup window)
    for name, (waiting, error) in down.items():
        others = [c for c in chans if c.name not in down]
        log.error("alert_delivery_failing", channel=name, waiting=waiting, error=error)
        if others:
            sub = DispatchCounts()
            _queue(box, [delivery_failed_alert(name, waiting, error)], others, cfg, now, sub)
            _drain(box, others, cfg, now, sleep, sub)
            counts.failed += sub.failed


def _drain_channel(
    box: Outbox, chan: Channel, cfg: AlertsConfig, now: datetime, sleep: Callable[[float], None],
    counts: DispatchCounts, down: dict[str, tuple[int, str]],
) -> list[str]:
    """Send ``chan``'s due rows in order; stop at the first that fails.  The titles held back."""
    held: list[str] = []
    budget = cfg.max_per_hour - box.sent_since(chan.name, now - timedelta(hours=1), now)
    rows = box.due(chan.name, now)
    for i, row in enumerate(rows):
        alert = _alert(row)
        exempt = alert.severity is Severity.CRITICAL or alert.key.startswith(DIGEST_PREFIX)
        if not exempt and budget <= 0:
            box.held(row.id)
            held.append(alert.title)
            counts.held += 1
            log.warning("alert_rate_limited", channel=chan.name, key=alert.key, max_per_hour=cfg.max_per_hour)
            continue
        ok, failures, error = _attempts(chan, alert, cfg, sleep)
        counts.failed += failures
        attempts = row.attempts + failures + (1 if ok else 0)
        if ok:
            box.sent(row.id, now, attempts)
            counts.sent += 1
            budget -= 1
            log.info("alert_sent", channel=chan.name, key=alert.key)
            continue
        wait = min(timedelta(seconds=cfg.retry_backoff * 2 ** min(attempts, 20)), MAX_BACKOFF)
        box.failed(row.id, attempts, failures, now + wait, error)
        log.error("alert_channel_failed", channel=chan.name, key=alert.key, attempts=attempts, error=error)
        # the channel is down: the rest waits for the next run (their attempt counts untouched)
        waiting = len(rows) - i
        counts.queued += waiting
        counts.down.append(chan.name)
        down[chan.name] = (waiting, error)
        break
    return held


def _attempts(chan: Channel, alert: Alert, cfg: AlertsConfig, sleep: Callable[[float], None]) -> tuple[bool, int, str]:
    """(delivered, failed attempts, last error): up to ``retry_attempts`` tries with doubling delays."""
    error = ""
    for attempt in range(cfg.retry_attempts):
        if attempt:
            sleep(cfg.retry_backoff * 2 ** (attempt - 1))
        try:
            chan.send(alert)
        except ChannelFailed as exc:
            error = str(exc)
        except Exception as exc:  # a channel bug must not fail the run either
            error = f"{type(exc).__name__}: {exc}"
        else:
            return True, attempt, ""
    return False, cfg.retry_attempts, error


def _alert(row: OutboxRow) -> Alert:
    a = row.alert
    return Alert(Severity(a["severity"]), a["key"], a["title"], a["body"], dict(a.get("facts") or {}))
