"""Prometheus metrics of the daemon, in a private registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from provisioner.core.values.plan import Change
from provisioner.store.outbox import Outbox

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Leadership(Collector):
    """``provisioner_leader{target}``: 1 while this replica applies to the target, read at scrape time."""

    def __init__(self, leading: Callable[[], Mapping[str, bool]]) -> None:
        self._leading = leading

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "provisioner_leader",
            "1 while this replica holds the target's leader lock (or ha_lock is off), else 0.",
            labels=["target"],
        )
        for target, leads in sorted(self._leading().items()):
            family.add_metric([target], 1.0 if leads else 0.0)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("provisioner_runs", "Runs by outcome.", ["outcome"], registry=r)
        self.run_duration = Histogram(
            "provisioner_run_duration_seconds",
            "Duration of a run (read, plan and apply).",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.identities_seen = Gauge(
            "provisioner_identities_seen", "Identities read from every source in the last run.", registry=r
        )
        self.shortcuts = Counter(
            "provisioner_run_shortcuts",
            "Runs that skipped work they proved unnecessary: short_circuit (the last empty plan "
            "stood) or reused_actual (a target's actual state was not read again).",
            ["shortcut"],
            registry=r,
        )
        self.changes = Counter("provisioner_changes", "Changes applied, by kind.", ["kind"], registry=r)
        self.breaker_trips = Counter(
            "provisioner_breaker_trips", "Runs refused by the safety checks (circuit breaker).", registry=r
        )
        self.last_success = Gauge(
            "provisioner_last_success_timestamp_seconds",
            "Unix time of the last successful run, per target.",
            ["target"],
            registry=r,
        )
        self.run_in_progress = Gauge(
            "provisioner_run_in_progress_seconds",
            "Seconds the run in progress has taken so far (0 when idle); alert on it above [daemon] stuck_after.",
            registry=r,
        )
        self.leaver_latency = Histogram(
            "provisioner_leaver_latency_seconds",
            "From a leaver's leave instant (or first sight as a leaver) to the role being disabled.",
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 86400),
            registry=r,
        )

    def track_leadership(self, leading: Callable[[], Mapping[str, bool]]) -> None:
        self.registry.register(_Leadership(leading))

    def record_shortcuts(self, meta: Mapping[str, object]) -> None:
        for shortcut in ("short_circuit", "reused_actual"):
            if shortcut in meta:
                self.shortcuts.labels(shortcut=shortcut).inc()

    def record_applied(self, changes: Iterable[Change]) -> None:
        for change in changes:
            self.changes.labels(kind=change.kind.value).inc()

    def record_leaver(self, since: datetime, disabled_at: datetime) -> None:
        self.leaver_latency.observe(max(0.0, (disabled_at - since).total_seconds()))

    def watch_alerts(self, outbox: Outbox) -> None:
        """``provisioner_alerts_failed_total`` and ``provisioner_alert_outbox_depth``, read from
        the durable outbox at each scrape (so they survive restarts and count every replica)."""
        self.registry.register(_OutboxCollector(outbox))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _OutboxCollector(Collector):
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def collect(self) -> Iterator[Metric]:
        failed = CounterMetricFamily(
            "provisioner_alerts_failed", "Failed alert delivery attempts (all channels, ever)."
        )
        depth = GaugeMetricFamily(
            "provisioner_alert_outbox_depth", "Alerts waiting in the outbox for delivery (a channel is failing)."
        )
        try:
            failed.add_metric([], self._outbox.failures_total())
            depth.add_metric([], self._outbox.depth())
        except Exception:
            return
        yield failed
        yield depth

    def describe(self) -> Iterator[Metric]:
        return iter(())
