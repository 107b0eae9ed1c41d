"""APScheduler 3 wiring: the configured jobs, one-off retries and leave timers.

Every job calls ``dispatch(job_name, trigger)``.  Jobs never overlap: each has
``max_instances = 1`` and a missed run is coalesced into one; beyond that, the
runner's lock keeps any two runs (of any job, or an HTTP trigger) apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from provisioner.config import Config, JobConfig
from provisioner.errors import ConfigError
from provisioner.logs import log

JOB_NAMES = ("reconcile", "source_sync", "review_reminder")
LEAVE_TIMER_PREFIX = "leave_timer:"
RETRY_PREFIX = "retry:"
MAX_TIMERS = 1000
"""Leave timers kept at once (the soonest); later ones are scheduled by later runs."""
TIMER_DELAY = timedelta(seconds=1)
"""A timer fires just after the instant so that the instant has passed when the run classifies."""

Dispatch = Callable[[str, str], None]


def build_trigger(name: str, job: JobConfig) -> IntervalTrigger | CronTrigger:
    if job.cron is not None:
        try:
            return CronTrigger.from_crontab(job.cron, timezone=UTC, jitter=int(job.jitter) or None)
        except ValueError as exc:
            raise ConfigError(f"daemon.jobs.{name}.cron: {job.cron!r}: {exc}") from exc
    assert job.interval is not None
    return IntervalTrigger(seconds=job.interval, timezone=UTC, jitter=int(job.jitter) or None)


def check_jobs(cfg: Config) -> None:
    """Raise :class:`ConfigError` for a schedule APScheduler does not accept."""
    for name in JOB_NAMES:
        job = getattr(cfg.daemon.jobs, name)
        if job is not None:
            build_trigger(name, job)


class Schedule:
    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch
        self._closed = False
        self._specs: dict[str, JobConfig] = {}
        """The schedule each configured job was added with: a reload that keeps it keeps the job."""
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def start(self, cfg: Config) -> None:
        self.configure(cfg, first=True)
        self.scheduler.start()

    def configure(self, cfg: Config, first: bool = False) -> None:
        """(Re)schedule every configured job from ``cfg``; the reconcile job runs at once at start.
        A job whose schedule a reload leaves as it was keeps its next run time (re-adding it would
        restart its interval: reloads more frequent than the interval would starve it); one paused
        after a permanent failure is resumed."""
        for name in JOB_NAMES:
            job = getattr(cfg.daemon.jobs, name)
            if job is None or not job.enabled:
                self._remove(name)
                self._specs.pop(name, None)
                continue
            existing = None if first else self.scheduler.get_job(name)
            if existing is not None and self._specs.get(name) == job:
                if existing.next_run_time is None:
                    existing.resume()
                continue
            self._specs[name] = job
            start = {"next_run_time": datetime.now(UTC)} if first and name == "reconcile" else {}
            self.scheduler.add_job(
                self._dispatch,
                build_trigger(name, job),
                args=(name, "schedule"),
                id=name,
                name=name,
                replace_existing=True,
                misfire_grace_time=int(job.misfire_grace_time) or None,
                **start,
            )
            log.info("job_scheduled", job=name, interval=job.interval, cron=job.cron, jitter=job.jitter)

    def _remove(self, job_id: str) -> None:
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)

    def pause(self, name: str) -> None:
        if self._closed:
            return
        with contextlib.suppress(JobLookupError):
            self.scheduler.pause_job(name)
        self._remove(RETRY_PREFIX + name)

    def retry(self, name: str, delay: float) -> datetime:
        """A one-off retry of ``name`` after ``delay`` seconds (replacing any pending one)."""
        at = datetime.now(UTC) + timedelta(seconds=delay)
        if self._closed:
            return at
        self.scheduler.add_job(
            self._dispatch,
            DateTrigger(run_date=at, timezone=UTC),
            args=(name, "retry"),
            id=RETRY_PREFIX + name,
            replace_existing=True,
            misfire_grace_time=None,
        )
        return at

    def run_now(self, name: str, trigger: str) -> None:
        """A one-off run of job ``name`` as soon as possible (e.g. on gaining leadership)."""
        if self._closed:
            return
        self.scheduler.add_job(
            self._dispatch,
            DateTrigger(run_date=datetime.now(UTC), timezone=UTC),
            args=(name, trigger),
            id=f"{trigger}:{name}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def set_timers(self, instants: Iterable[datetime]) -> int:
        """One date job per future lifecycle instant; stale timers removed."""
        now = datetime.now(UTC)
        if self._closed:
            return 0
        wanted = {
            LEAVE_TIMER_PREFIX + at.astimezone(UTC).isoformat(): at
            for at in sorted(i for i in instants if i > now)[:MAX_TIMERS]
        }
        for job in self.scheduler.get_jobs():
            if job.id.startswith(LEAVE_TIMER_PREFIX) and job.id not in wanted:
                job.remove()
        for job_id, at in wanted.items():
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(
                    self._dispatch,
                    DateTrigger(run_date=at + TIMER_DELAY, timezone=UTC),
                    args=("reconcile", "leave_timer"),
                    id=job_id,
                    misfire_grace_time=None,
                )
        return len(wanted)

    def timers(self) -> list[str]:
        return sorted(j.id for j in self.scheduler.get_jobs() if j.id.startswith(LEAVE_TIMER_PREFIX))

    def shutdown(self) -> None:
        """Stop scheduling; a job in progress goes on (the daemon waits for its run).

        Not ``shutdown(wait=True)``: APScheduler holds its job-store lock while it
        waits, and the finishing job would block on it (rescheduling its timers)."""
        self._closed = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
