"""With log_format = "json" every line on stderr is a JSON object: structlog's
events, standard-library records of libraries (APScheduler, urllib3) and Python
warnings alike; secrets redacted in all of them."""

from __future__ import annotations

import json
import subprocess
import sys

SNIPPET = r"""
import logging, warnings
from provisioner.logs import configure, log
configure("json", "info")
warnings.simplefilter("always")
log.info("structlog_event", answer=42)
logging.getLogger("apscheduler.scheduler").warning("Run time of job %r was missed by %s", "reconcile", "0:00:07")
logging.getLogger("apscheduler.executors.default").info("Running job (info: below the library floor)")
logging.getLogger("urllib3.connectionpool").error("Retrying (%d) after connection broken", 3)
logging.getLogger("some.lib").warning("with a token", extra={"token": "hunter2-secret"})
warnings.warn("platformdirs: XDG_RUNTIME_DIR is not set", RuntimeWarning)
warnings.warn("licence table is deprecated", DeprecationWarning)
"""


def test_every_line_is_json_including_stdlib_logging_and_warnings() -> None:
    res = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, check=True)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # raises on any non-JSON line
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events), events
    by_logger = {e.get("logger"): e for e in events}
    assert "Run time of job 'reconcile' was missed" in by_logger["apscheduler.scheduler"]["event"]
    assert by_logger["urllib3.connectionpool"]["level"] == "error"
    assert by_logger["py.warnings"]["level"] == "warning"
    assert sum(1 for e in events if e.get("logger") == "py.warnings") == 2
    assert not any("Running job" in e["event"] for e in events), "APScheduler's info lines stay below the floor"
    assert events[0]["event"] == "structlog_event" and events[0]["answer"] == 42
    assert "hunter2-secret" not in res.stderr
