"""A breaker trip (or an unhealthy source) never pauses the daemon's reconcile job
(issue 14, finding 5): the trip is alerted, the job stays scheduled, and the next
run whose plan is within the limits proceeds without a SIGHUP."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.daemon import alerting
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
