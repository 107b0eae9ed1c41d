"""The alert hook for failed daemon jobs.

A failed job is logged as an ``error``-level ``job_failure_alert`` event and sent
through the configured alert channels (``[alerts]``, :func:`dispatch_alerts`):
critical for a permanent failure (the job is paused), a warning once a temporary
one has repeated ``daemon.failure_alert_after`` times -- unless the failure was
recorded as a run, whose own ``run_failing`` alert (``[alerts] failure_streak``)
already reaches the channels: one incident, one alert.  Callables in
:data:`FAILURE_HOOKS` get every failure too.  Nothing here raises: alerting never
takes the daemon down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from provisioner.alerts import dispatch_alerts
from provisioner.config import Config
from provisioner.core.governance.alerts import Alert, Severity
from provisioner.logs import log
from provisioner.store.state import StateStore


@dataclass(frozen=True, slots=True)
class JobFailure:
    job: str
    error_type: str
    message: str
    permanent: bool
    consecutive_failures: int
    at: datetime
    run_id: str | None = None


FAILURE_HOOKS: tuple[Callable[[JobFailure], None], ...] = ()
"""Extra receivers of every failure (a test's seam; none in production): immutable."""


def to_alert(failure: JobFailure) -> Alert:
    what = "paused until the configuration is fixed and reloaded (SIGHUP)" if failure.permanent else "retrying"
    return Alert(
        Severity.CRITICAL if failure.permanent else Severity.WARNING,
        f"daemon_job_failed:{failure.job}:{failure.error_type}",
        f"provisioner daemon: job {failure.job} failed ({failure.error_type}); {what}",
        failure.message,
        {
            "job": failure.job,
            "error": failure.error_type,
            "permanent": str(failure.permanent).lower(),
            "consecutive_failures": str(failure.consecutive_failures),
            "at": failure.at.isoformat(),
        },
    )


def alert_job_failure(failure: JobFailure, cfg: Config | None = None, store: StateStore | None = None) -> None:
    log.error(
        "job_failure_alert",
        job=failure.job,
        error=failure.error_type,
        message=failure.message,
        permanent=failure.permanent,
        consecutive_failures=failure.consecutive_failures,
        run_id=failure.run_id,
    )
    covered = failure.run_id is not None and not failure.permanent  # run_failing covers it
    if cfg is not None and not covered:
        try:
            dispatch_alerts([to_alert(failure)], cfg.alerts, store)
        except Exception as exc:  # dispatch_alerts never raises by contract; belt and braces
            log.error("alert_dispatch_failed", error=repr(exc))
    for hook in FAILURE_HOOKS:
        try:
            hook(failure)
        except Exception as exc:  # an alert channel failing must not stop the daemon
            log.error("alert_hook_failed", hook=getattr(hook, "__name__", repr(hook)), error=repr(exc))
