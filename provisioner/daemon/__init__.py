"""The daemon: scheduled reconciliation, leader election, health, metrics and triggers.

``provisioner daemon -c config.toml`` builds a :class:`provisioner.daemon.service.Daemon`:

* :mod:`.scheduler` — APScheduler jobs (interval or cron, jitter, no overlap, coalesced misfires),
  one-off retries and leave timers;
* :mod:`.jobs` — what a job does, and how its errors are handled (retry, pause, alert);
* :mod:`.runner` — one run: plan, and apply the targets this replica leads;
* :mod:`.ha` — a session-level PostgreSQL advisory lock per target elects the applier;
* :mod:`.http` — ``/healthz``, ``/readyz``, ``/metrics`` and ``POST /v1/runs``;
* :mod:`.service` — signals (SIGTERM/SIGINT stop, SIGHUP reload) and the main loop.
"""
