"""What each scheduled job does, and what happens when it fails.

* a :class:`~provisioner.errors.TemporaryError` (directory down, database
  unreachable, apply rolled back) schedules a one-off retry after
  ``retry_after * 2**(n-1)`` seconds, capped at ``daemon.retry_max_delay``; after
  ``daemon.failure_alert_after`` consecutive failures the alert hook is called;
* a breaker trip or an unhealthy source refuses that run only (audited, alerted):
  the job stays scheduled and the next run within the limits proceeds;
* any other :class:`~provisioner.errors.PermanentError` (bad rules, refused plan) pauses
  the job, marks it failed (``/readyz`` turns 503) and calls the alert hook at
  once; a successful ``SIGHUP`` reload resumes it;
* nothing a job raises stops the daemon.

``review_reminder`` opens the access-review campaign of the period when it is
due (``[review] schedule``) and sends reminders for open items.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from provisioner.daemon.alerting import JobFailure, alert_job_failure
from provisioner.daemon.runner import Busy, Loaded, Runner, RunResult
from provisioner.daemon.scheduler import Schedule
from provisioner.daemon.status import Status
from provisioner.errors import (
    BreakerTripped,
    PermanentError,
    ProvisionerError,
    RunInterrupted,
    SourceUnhealthy,
    TemporaryError,
)
from provisioner.logs import log
from provisioner.review.campaign import open_scheduled_campaign, remind_reviewers
from provisioner.store.state import StateStore

BUSY_RETRY_SECONDS = 5.0
T = TypeVar("T")


def backoff(failures: int, retry_after: float, cap: float) -> float:
    """Capped exponential backoff: ``retry_after``, doubled per consecutive failure."""
    return float(min(cap, max(1.0, retry_after) * 2 ** max(0, failures - 1)))


class Jobs:
    def __init__(
        self, runner: Runner, status: Status, current: Callable[[], Loaded], store: StateStore | None = None
    ) -> None:
        self._store = store
        self._runner = runner
        self._status = status
        self._current = current
        self.schedule: Schedule | None = None
        self._stuck_alerted: dict[str, datetime] = {}
        """Per job, the start of the stuck run already alerted."""

    def dispatch(self, job: str, trigger: str) -> None:
        """Entry point of every scheduler job; never raises."""
        try:
            if job == "review_reminder":
                self._attempt(job, trigger, self.review_reminder)
            else:
                self.reconcile(job, trigger)
        except Exception as exc:  # the daemon stays up whatever a job does
            log.exception("job_crashed", job=job, trigger=trigger, error=repr(exc))

    def review_reminder(self) -> None:
        """Open this period's access-review campaign if due, and remind reviewers of open items."""

        def work() -> None:
            cfg = self._current().cfg
            if self._store is None:
                return
            opened = open_scheduled_campaign(cfg, self._store)
            sent = remind_reviewers(cfg, self._store)
            log.info("review_reminder_done", campaign_opened=opened, reminders=len(sent))

        self._runner.exclusive(work)

    def reconcile(self, job: str, trigger: str) -> RunResult | None:
        cfg = self._current().cfg
        return self._attempt(
            job, trigger, lambda: self._runner.run(cfg.daemon.mode, job if trigger == "schedule" else trigger)
        )

    def _attempt(self, job: str, trigger: str, action: Callable[[], T]) -> T | None:
        state = self._status.job(job)
        if state.state == "running":  # the same job still in progress: leave its state alone
            log.info("run_skipped_busy", job=job, trigger=trigger)
            self.check_stuck()
            return None
        if state.state == "failed" and trigger != "leave_timer":
            log.warning("job_paused_after_failure", job=job, error=state.last_error)
            return None
        state.state, state.started = "running", datetime.now(UTC)
        try:
            result = action()
        except Busy:
            state.state, state.started = "scheduled", None
            log.info("run_skipped_busy", job=job, trigger=trigger)
            self.check_stuck()
            if trigger in ("leave_timer", "retry", "leader_acquired") and self.schedule is not None:
                self.schedule.retry(job, BUSY_RETRY_SECONDS)
            return None
        except RunInterrupted as exc:
            state.state, state.started = "scheduled", None
            log.warning("run_interrupted", job=job, message=str(exc))
            return None
        except TemporaryError as exc:
            self._temporary(job, exc)
            return None
        except (BreakerTripped, SourceUnhealthy) as exc:  # about this plan only: never pauses the job
            self._refused(job, exc)
            return None
        except PermanentError as exc:
            self._permanent(job, exc)
            return None
        except Exception as exc:  # an untranslated library error: retried like a temporary one
            log.exception("run_crashed", job=job, error=repr(exc))
            self._temporary(job, TemporaryError(repr(exc)))
            return None
        state.state, state.started = "scheduled", None
        state.consecutive_failures = 0
        state.last_outcome, state.last_error = "ok", None
        state.last_finished = datetime.now(UTC)
        if isinstance(result, RunResult):
            state.last_run_id = result.run_id
            self._finished(job, result)
        return result

    def _finished(self, job: str, result: RunResult) -> None:
        timers = len(self.schedule.timers()) if self.schedule is not None else 0
        log.info(
            "run_finished",
            job=job,
            run_id=result.run_id,
            mode=result.mode,
            changes=len(result.plan.changes),
            applied_targets=list(result.applied_targets),
            timers=timers,
        )

    def _temporary(self, job: str, exc: TemporaryError) -> None:
        cfg = self._current().cfg
        state = self._status.job(job)
        state.consecutive_failures += 1
        state.started = None
        state.state, state.last_outcome, state.last_error = "retrying", "failed", f"{type(exc).__name__}: {exc}"
        state.last_finished = datetime.now(UTC)
        delay = backoff(state.consecutive_failures, exc.retry_after, cfg.daemon.retry_max_delay)
        if self._status.stopping or self.schedule is None:
            return
        at = self.schedule.retry(job, delay)
        log.warning(
            "job_retry_scheduled",
            job=job,
            error=type(exc).__name__,
            message=str(exc),
            consecutive_failures=state.consecutive_failures,
            retry_at=at.isoformat(),
        )
        if state.consecutive_failures >= cfg.daemon.failure_alert_after:
            alert_job_failure(self._failure(job, exc, False, state.consecutive_failures), cfg, self._store)

    def check_stuck(self) -> None:
        """A scheduled run found the previous one still in progress: past ``stuck_after``
        that is an incident (alerted once per stuck run; /readyz and the
        ``provisioner_run_in_progress_seconds`` gauge show it too)."""
        for name, seconds in self._status.stuck().items():
            started = self._status.job(name).started
            if started is None or started == self._stuck_alerted.get(name):
                continue
            self._stuck_alerted[name] = started
            message = (
                f"the run of job {name} started {started.isoformat()} is still in progress after {seconds:.0f} s "
                f"([daemon] stuck_after = {self._status.stuck_after():g} s); scheduled runs are skipped meanwhile. "
                "Look for a blocked session on the targets (pg_stat_activity / SHOW PROCESSLIST)."
            )
            log.error("run_stuck", job=name, started=started.isoformat(), seconds=round(seconds))
            failure = JobFailure(name, "RunStuck", message, False, 1, datetime.now(UTC), None)
            alert_job_failure(failure, self._current().cfg, self._store)

    def _refused(self, job: str, exc: PermanentError) -> None:
        """A breaker trip or an unhealthy source: this run is refused (audited and alerted),
        the job stays scheduled, and the next run whose plan is within the limits proceeds."""
        state = self._status.job(job)
        state.consecutive_failures += 1
        state.started = None
        state.state, state.last_outcome, state.last_error = "scheduled", "refused", f"{type(exc).__name__}: {exc}"
        state.last_finished = datetime.now(UTC)
        log.error("run_refused", job=job, error=type(exc).__name__, message=str(exc))
        alert_job_failure(self._failure(job, exc, False, state.consecutive_failures), self._current().cfg, self._store)

    def _permanent(self, job: str, exc: PermanentError) -> None:
        state = self._status.job(job)
        state.consecutive_failures += 1
        state.started = None
        state.state, state.last_outcome, state.last_error = "failed", "failed", f"{type(exc).__name__}: {exc}"
        state.last_finished = datetime.now(UTC)
        if self.schedule is not None:
            self.schedule.pause(job)
        log.error("job_paused", job=job, error=type(exc).__name__, message=str(exc))
        alert_job_failure(self._failure(job, exc, True, state.consecutive_failures), self._current().cfg, self._store)

    @staticmethod
    def _failure(job: str, exc: Exception, permanent: bool, n: int) -> JobFailure:
        run_id = exc.run_id if isinstance(exc, ProvisionerError) else None
        return JobFailure(job, type(exc).__name__, str(exc), permanent, n, datetime.now(UTC), run_id)

    def resume_failed(self) -> list[str]:
        """After a successful reload: give every failed job another chance."""
        resumed = []
        for name, state in list(self._status.jobs.items()):
            if state.state == "failed":
                state.state, state.consecutive_failures = "scheduled", 0
                resumed.append(name)
        return resumed
