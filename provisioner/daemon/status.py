"""What ``/readyz`` reports: config reloads, job states (a run in progress for longer
than ``[daemon] stuck_after`` turns it 503), the scheduler."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(slots=True)
class JobState:
    state: str = "scheduled"
    """scheduled | running | retrying | failed (paused until a reload) | disabled"""
    consecutive_failures: int = 0
    last_outcome: str | None = None
    last_error: str | None = None
    last_run_id: str | None = None
    last_finished: datetime | None = None
    started: datetime | None = None
    """When the run in progress started (None when not running)."""

    def running_for(self, now: datetime) -> float:
        """Seconds the run in progress has taken so far (0 when not running)."""
        if self.state != "running" or self.started is None:
            return 0.0
        return max(0.0, (now - self.started).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "started": self.started.isoformat() if self.started else None,
            "consecutive_failures": self.consecutive_failures,
            "last_outcome": self.last_outcome,
            "last_error": self.last_error,
            "last_run_id": self.last_run_id,
            "last_finished": self.last_finished.isoformat() if self.last_finished else None,
        }


class Status:
    def __init__(self, config_path: str) -> None:
        self._lock = threading.Lock()
        self.config_path = config_path
        self.config_loaded_at = datetime.now(UTC)
        self.reload_error: str | None = None
        self.reload_failed_at: datetime | None = None
        self.jobs: dict[str, JobState] = {}
        self.stopping = False
        self.scheduler_running: Callable[[], bool] = lambda: False
        self.leadership: Callable[[], dict[str, bool]] = dict
        self.stuck_after: Callable[[], float] = lambda: 1800.0
        """Seconds after which a run in progress counts as stuck (``[daemon] stuck_after``)."""

    def running_for(self, now: datetime | None = None) -> float:
        """Seconds the longest run in progress has taken so far (0 when none runs)."""
        at = now or datetime.now(UTC)
        with self._lock:
            return max((j.running_for(at) for j in self.jobs.values()), default=0.0)

    def stuck(self, now: datetime | None = None) -> dict[str, float]:
        """Jobs whose run has been in progress for longer than ``stuck_after``."""
        at, limit = now or datetime.now(UTC), self.stuck_after()
        with self._lock:
            return {n: j.running_for(at) for n, j in self.jobs.items() if j.running_for(at) > limit}

    def job(self, name: str) -> JobState:
        with self._lock:
            return self.jobs.setdefault(name, JobState())

    def reloaded(self) -> None:
        with self._lock:
            self.config_loaded_at = datetime.now(UTC)
            self.reload_error = None
            self.reload_failed_at = None

    def reload_failed(self, error: str) -> None:
        with self._lock:
            self.reload_error = error
            self.reload_failed_at = datetime.now(UTC)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        stuck = self.stuck()
        with self._lock:
            failed = {n: j.last_error for n, j in self.jobs.items() if j.state == "failed"}
            config: dict[str, Any] = {
                "ok": self.reload_error is None,
                "path": self.config_path,
                "loaded_at": self.config_loaded_at.isoformat(),
            }
            if self.reload_error is not None:
                config["reload_error"] = self.reload_error
                config["reload_failed_at"] = self.reload_failed_at.isoformat() if self.reload_failed_at else None
                config["note"] = "the configuration and rules loaded at loaded_at are still in use"
            running = self.scheduler_running()
            checks = {
                "config": config,
                "scheduler": {"ok": running and not self.stopping, "stopping": self.stopping},
                "jobs": {
                    "ok": not failed and not stuck,
                    **({"stuck_seconds": stuck, "stuck_after": self.stuck_after()} if stuck else {}),
                    **{n: j.to_json() for n, j in self.jobs.items()},
                },
                "leader": self.leadership(),
            }
        ready = bool(config["ok"] and checks["scheduler"]["ok"] and not failed and not stuck)
        return ready, {"ready": ready, "checks": checks}
