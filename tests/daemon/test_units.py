"""Daemon pieces without servers: config, backoff, error handling, timers, readiness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import load_config
from provisioner.daemon import alerting
from provisioner.daemon.jobs import Jobs, backoff
from provisioner.daemon.runner import Busy
from provisioner.daemon.scheduler import LEAVE_TIMER_PREFIX, RETRY_PREFIX, Schedule
from provisioner.daemon.status import Status
from provisioner.errors import ConfigError, RuleError, SourceUnavailable

BASE = """
[[sources]]
name = "s"
type = "ldif"
path = "d.ldif"

[[targets]]
name = "t"
type = "postgresql"
dsn = "host=127.0.0.1"
"""


def cfg_with(tmp_path: Path, daemon: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(BASE + daemon)
    return path


def test_daemon_defaults_are_safe(tmp_path: Path) -> None:
    cfg = load_config(cfg_with(tmp_path, ""))
    assert cfg.daemon.mode == "plan" and cfg.daemon.listen == "127.0.0.1:9465" and cfg.daemon.trigger_token is None
    assert cfg.daemon.jobs.reconcile.interval == 900 and cfg.daemon.jobs.reconcile.jitter == 30


def test_daemon_config_parses_durations_and_cron(tmp_path: Path) -> None:
    cfg = load_config(
        cfg_with(
            tmp_path,
            '[daemon]\nmode = "apply"\nlisten = "[::1]:9000"\ntrigger_token = "env:T"\nretry_max_delay = "10m"\n'
            '[daemon.jobs.reconcile]\ncron = "*/15 * * * *"\njitter = "30s"\n[daemon.jobs.source_sync]\ninterval = "2h"\n',
        )
    )
    assert cfg.daemon.retry_max_delay == 600 and cfg.daemon.jobs.reconcile.cron == "*/15 * * * *"
    assert cfg.daemon.jobs.source_sync is not None and cfg.daemon.jobs.source_sync.interval == 7200


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ('[daemon]\nlisten = "0.0.0.0:9465"', "daemon.listen: Value error, '0.0.0.0' is not a loopback address"),
        ('[daemon]\nlisten = "10.1.2.3:9465"', "is not a loopback address"),
        ('[daemon]\nmode = "yes"', "daemon.mode"),
        ('[daemon]\ntrigger_token = "hunter2"', "daemon.trigger_token"),
        ('[daemon.jobs.reconcile]\ninterval = "5m"\ncron = "* * * * *"', "set exactly one of interval or cron"),
        ('[daemon.jobs.reconcile]\ninterval = "soon"', "'soon' is not a duration"),
    ],
)
def test_bad_daemon_config_names_file_and_key(tmp_path: Path, section: str, needle: str) -> None:
    path = cfg_with(tmp_path, section)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 30, 600) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]


class FakeRunner:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.calls = 0

    def run(self, mode: str, trigger: str) -> Any:
        self.calls += 1
        raise self.error  # type: ignore[misc]


class FakeLoaded:
    def __init__(self, tmp_path: Path) -> None:
        self.cfg = load_config(cfg_with(tmp_path, "[daemon]\nfailure_alert_after = 2\nretry_max_delay = 60\n"))


def make_jobs(tmp_path: Path, error: BaseException) -> tuple[Jobs, Schedule, Status, FakeRunner]:
    loaded = FakeLoaded(tmp_path)
    status = Status("c.toml")
    runner = FakeRunner(error)
    jobs = Jobs(runner, status, lambda: loaded)  # type: ignore[arg-type, return-value]
    schedule = Schedule(jobs.dispatch)
    jobs.schedule = schedule
    schedule.scheduler.start(paused=True)
    status.scheduler_running = lambda: True
    return jobs, schedule, status, runner


def test_temporary_error_schedules_a_retry_and_alerts_after_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[alerting.JobFailure] = []
    monkeypatch.setattr(alerting, "FAILURE_HOOKS", [sent.append])
    jobs, schedule, status, _ = make_jobs(tmp_path, SourceUnavailable("ldap down", retry_after=10))
    try:
        jobs.dispatch("reconcile", "schedule")
        retry = schedule.scheduler.get_job(RETRY_PREFIX + "reconcile")
        assert retry is not None and status.job("reconcile").state == "retrying"
        assert sent == []
        jobs.dispatch("reconcile", "retry")
        assert len(sent) == 1 and not sent[0].permanent and sent[0].consecutive_failures == 2
        delay = (retry.next_run_time - datetime.now(UTC)).total_seconds()
        assert 0 < delay <= 10
        ready, detail = status.readiness()
        assert ready, detail  # a temporary failure is retried; the daemon stays ready
    finally:
        schedule.scheduler.shutdown(wait=False)


def test_permanent_error_pauses_the_job_alerts_and_readyz_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[alerting.JobFailure] = []
    monkeypatch.setattr(alerting, "FAILURE_HOOKS", [sent.append])
    jobs, schedule, status, runner = make_jobs(tmp_path, RuleError(["r.toml:3: bad"]))
    try:
        schedule.configure(jobs._current().cfg)
        jobs.dispatch("reconcile", "schedule")
        assert schedule.scheduler.get_job("reconcile").next_run_time is None  # paused
        assert len(sent) == 1 and sent[0].permanent and sent[0].error_type == "RuleError"
        ready, detail = status.readiness()
        assert not ready and detail["checks"]["jobs"]["reconcile"]["state"] == "failed"
        jobs.dispatch("reconcile", "schedule")
        assert runner.calls == 1, "a failed job does not run again until a reload"
        assert jobs.resume_failed() == ["reconcile"] and status.readiness()[0]
        schedule.configure(jobs._current().cfg)  # the reload that resumed it: the same schedule, unpaused
        assert schedule.scheduler.get_job("reconcile").next_run_time is not None
    finally:
        schedule.scheduler.shutdown(wait=False)


def test_busy_leave_timer_is_retried_shortly(tmp_path: Path) -> None:
    jobs, schedule, _, _ = make_jobs(tmp_path, Busy("a run is in progress"))
    try:
        jobs.dispatch("reconcile", "leave_timer")
        assert schedule.scheduler.get_job(RETRY_PREFIX + "reconcile") is not None
    finally:
        schedule.scheduler.shutdown(wait=False)


def test_leave_timers_are_refreshed(tmp_path: Path) -> None:
    schedule = Schedule(lambda job, trigger: None)
    schedule.scheduler.start(paused=True)
    try:
        now = datetime.now(UTC)
        soon, later = now + timedelta(hours=1), now + timedelta(days=3)
        assert schedule.set_timers([soon, later, now - timedelta(days=1)]) == 2
        assert schedule.timers() == sorted(LEAVE_TIMER_PREFIX + t.isoformat() for t in (soon, later))
        job = schedule.scheduler.get_job(LEAVE_TIMER_PREFIX + soon.isoformat())
        assert job.args == ("reconcile", "leave_timer") and job.trigger.run_date > soon
        schedule.set_timers([later])
        assert schedule.timers() == [LEAVE_TIMER_PREFIX + later.isoformat()]
    finally:
        schedule.scheduler.shutdown(wait=False)
