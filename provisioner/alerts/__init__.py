"""Alert delivery: channels (webhook, SMTP, structlog), dedup, rate limits.

``dispatch_alerts(alerts, cfg, store)`` sends alerts someone else decided on
(the breaker, the daemon); ``run_alerts(cfg, store, run_id)`` evaluates the
records of a finished run with :func:`provisioner.core.governance.alerts.evaluate` and
sends what it finds.  Neither ever raises.
"""

from provisioner.alerts.dispatch import DispatchCounts, dispatch_alerts
from provisioner.alerts.run import deliver_run_alerts, run_alerts

__all__ = ["DispatchCounts", "deliver_run_alerts", "dispatch_alerts", "run_alerts"]
