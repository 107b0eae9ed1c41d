"""A breaker trip (or an unhealthy source) never pauses the daemon's reconcile job
(issue 14, finding 5): the trip is alerted, the job stays scheduled, and the next
run whose plan is within the limits proceeds without a SIGHUP.  A stuck run
shows in /readyz, a gauge and one alert (finding 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.daemon import alerting
from provisioner.daemon.metrics import Metrics
from provisioner.daemon.runner import Busy
from provisioner.errors import BreakerTripped, SourceUnhealthy
from tests.daemon.test_units import make_jobs


@pytest.mark.parametrize(
    "error",
    [BreakerTripped(["pg: mass-revocation breaker: 60 of 100 (leavers)"]), SourceUnhealthy("source health gate")],
)
def test_a_refused_run_never_pauses_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    sent: list[alerting.JobFailure] = []
    monkeypatch.setattr(alerting, "FAILURE_HOOKS", [sent.append])
    jobs, schedule, status, runner = make_jobs(tmp_path, error)
    try:
        schedule.configure(jobs._current().cfg)
        jobs.dispatch("reconcile", "schedule")
        assert schedule.scheduler.get_job("reconcile").next_run_time is not None, "the job is not paused"
        state = status.job("reconcile")
        assert state.state == "scheduled" and state.last_outcome == "refused"
        assert len(sent) == 1 and sent[0].error_type == type(error).__name__, "the trip is alerted at once"
        jobs.dispatch("reconcile", "schedule")
        assert runner.calls == 2, "the next scheduled run is attempted without a reload"
    finally:
        schedule.scheduler.shutdown(wait=False)


def test_a_stuck_run_shows_in_readyz_the_gauge_and_one_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 4, the daemon side: a run in progress past ``[daemon] stuck_after``."""
    sent: list[alerting.JobFailure] = []
    monkeypatch.setattr(alerting, "FAILURE_HOOKS", [sent.append])
    jobs, schedule, status, runner = make_jobs(tmp_path, Busy("a run is in progress"))
    metrics = Metrics()
    metrics.run_in_progress.set_function(status.running_for)
    status.stuck_after = lambda: 60.0
    try:
        state = status.job("reconcile")
        assert status.readiness()[0] and status.running_for() == 0.0
        state.state, state.started = "running", datetime.now(UTC) - timedelta(minutes=2)
        ready, detail = status.readiness()
        assert not ready and detail["checks"]["jobs"]["stuck_seconds"]["reconcile"] >= 120
        assert b"provisioner_run_in_progress_seconds 1" in metrics.render()  # 120 s and more
        jobs.dispatch("reconcile", "schedule")  # the next tick finds it still running
        assert runner.calls == 0 and state.state == "running", "the stuck run's state is left alone"
        jobs.check_stuck()
        assert [f.error_type for f in sent] == ["RunStuck"], "one alert per stuck run"
        assert "stuck_after" in sent[0].message
        state.state, state.started = "scheduled", None
        assert status.readiness()[0], "ready again once the run ends"
    finally:
        schedule.scheduler.shutdown(wait=False)
