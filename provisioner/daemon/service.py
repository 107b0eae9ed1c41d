"""The daemon process: start, signals, reload, stop.

* SIGTERM / SIGINT: stop accepting triggers and scheduling; the run in progress
  finishes the transaction it is in (each target's apply is one transaction) and
  starts no further target; then the process exits 0.
* SIGHUP: reload the configuration file and the mapping rules.  If either does
  not validate, the previous ones stay in use, an ``error`` event is logged and
  ``/readyz`` reports the failure until a reload succeeds.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from types import FrameType

from provisioner.alerts import dispatch_alerts
from provisioner.config import Config
from provisioner.core.governance.alerts import reload_failed_alert
from provisioner.daemon.ha import Leadership
from provisioner.daemon.http import Api, HttpServer, check_trigger_token
from provisioner.daemon.jobs import Jobs
from provisioner.daemon.metrics import Metrics
from provisioner.daemon.runner import Loaded, Runner
from provisioner.daemon.scheduler import Schedule, check_jobs
from provisioner.daemon.status import Status
from provisioner.engine.installation import load, open_store
from provisioner.engine.warm import WarmState
from provisioner.errors import ProvisionerError, RuleError
from provisioner.logs import log
from provisioner.mappings import load_mappings
from provisioner.review.webserver import ReviewServer
from provisioner.validation import mapping_errors


def load_all(config_path: str) -> Loaded:
    """Config and rules, both validated as ``provisioner validate`` does (a rule reading an
    attribute no source maps never matches); raises :class:`ProvisionerError` otherwise."""
    cfg = load(config_path)
    check_jobs(cfg)
    check_trigger_token(cfg)
    mappings = load_mappings(cfg.mappings_dir)
    problems = mapping_errors(cfg, mappings)
    if problems:
        raise RuleError(problems)
    return Loaded(cfg, mappings, datetime.now(UTC))


class Daemon:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._loaded = load_all(config_path)
        cfg = self._loaded.cfg
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._reload_requested = False
        self.status = Status(str(cfg.path or config_path))
        self.metrics = Metrics()
        self.store = open_store(cfg)
        self.metrics.watch_alerts(self.store.outbox)
        self.leadership = Leadership(cfg)
        self.warm = WarmState()
        """What the daemon keeps between runs (memos, the last full run); a CLI run has none."""
        self.runner = Runner(self.current, self.store, self.metrics, self.leadership, self.stopping, self.warm)
        self.jobs = Jobs(self.runner, self.status, self.current, self.store)
        self.schedule = Schedule(self.jobs.dispatch)
        self.jobs.schedule = self.schedule
        self.runner.set_timers = self.schedule.set_timers  # after every run, whatever triggered it
        self.status.scheduler_running = lambda: self.schedule.running
        self.status.leadership = self.leadership.status
        self.status.stuck_after = lambda: self._loaded.cfg.daemon.stuck_after
        self.metrics.run_in_progress.set_function(self.status.running_for)
        self.metrics.track_leadership(self.leadership.leading)
        self.http = HttpServer(cfg.daemon.listen, Api(self.status, self.metrics, self.runner, self.current))
        self.review_web = ReviewServer.configured(cfg, self.store)  # [review] serve

    def current(self) -> Loaded:
        return self._loaded

    # ------------------------------------------------------------------ signals

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        self.status.stopping = True
        self._wake.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested = True
        self._wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    # ------------------------------------------------------------------ reload

    def reload(self) -> bool:
        old = self._loaded.cfg
        try:
            new = load_all(self.config_path)
        except ProvisionerError as exc:
            self.status.reload_failed(f"{type(exc).__name__}: {exc}")
            log.error(
                "reload_failed",
                error=type(exc).__name__,
                message=str(exc),
                kept_loaded_at=str(self._loaded.loaded_at.isoformat()),
            )
            dispatch_alerts([reload_failed_alert(f"{type(exc).__name__}: {exc}")], old.alerts, self.store)
            return False
        self._check_restart_only(old, new.cfg)
        self._loaded = new
        self.leadership.configure(new.cfg)
        resumed = self.jobs.resume_failed()
        self.schedule.configure(new.cfg)
        self.status.reloaded()
        log.info("reloaded", rules=len(new.mappings.rules.rules), resumed_jobs=resumed)
        return True

    @staticmethod
    def _check_restart_only(old: Config, new: Config) -> None:
        for key in ("listen",):
            if getattr(old.daemon, key) != getattr(new.daemon, key):
                log.warning("reload_needs_restart", key=f"daemon.{key}", kept=getattr(old.daemon, key))
        if old.state != new.state:
            log.warning("reload_needs_restart", key="state", note="the state store stays as it was")

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code (0 after a clean stop)."""
        self.install_signals()
        cfg = self._loaded.cfg
        self.http.start()
        if self.review_web is not None:
            self.review_web.start()
        self.schedule.start(cfg)
        self.leadership.watch(self._leader_gained, self._follows)
        log.info(
            "daemon_started",
            listen=self.http.address,
            mode=cfg.daemon.mode,
            ha_lock=cfg.daemon.ha_lock,
            targets=[t.name for t in cfg.targets],
        )
        while not self.stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self.jobs.check_stuck()  # a run past [daemon] stuck_after: alerted once (and /readyz 503)
            if self._reload_requested and not self.stopping.is_set():
                self._reload_requested = False
                self.reload()
        return self._stop()

    def _follows(self) -> bool:
        """Whether the lock loop has anything to do: only an applying daemon with ha_lock leads."""
        cfg = self._loaded.cfg
        return cfg.daemon.mode == "apply" and cfg.daemon.ha_lock and not self.stopping.is_set()

    def _leader_gained(self, targets: list[str]) -> None:
        log.info("leader_acquired", targets=targets, note="reconciling now")
        self.schedule.run_now("reconcile", "leader_acquired")

    def _stop(self) -> int:
        log.info("daemon_stopping", run_in_progress=self.runner.busy)
        self.schedule.shutdown()
        self.runner.wait_idle()  # the run in progress ends its transaction and starts no further target
        self.http.stop()
        if self.review_web is not None:
            self.review_web.stop()
        self.leadership.release_all()
        self.store.close()
        log.info("daemon_stopped")
        return 0
