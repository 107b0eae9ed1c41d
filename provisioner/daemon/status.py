"""What ``/readyz`` reports: config reloads, job states, the scheduler."""

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

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
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
                "jobs": {"ok": not failed, **{n: j.to_json() for n, j in self.jobs.items()}},
                "leader": self.leadership(),
            }
        ready = bool(config["ok"] and checks["scheduler"]["ok"] and not failed)
        return ready, {"ready": ready, "checks": checks}
