"""A leave date learned from an HTTP-triggered run gets its timer: the leaver is
disabled at the instant, not at the next scheduled run (an hour away here).

The source is Entra ID (the local Graph server), whose ``employeeLeaveDateTime``
is an instant, not a day.

The shared test server authenticates by ``trust``, where ``VALID UNTIL`` stops
nothing: the login is refused only once the timer's run has set NOLOGIN."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from provisioner.config import EntraSourceConfig
from tests.daemon.support import DaemonProc, daemonize, wait_for
from tests.entra.test_entra_e2e import TomlSource
from tests.entra.test_entra_e2e import person as entra_person
from tests.support.e2e import make_setup, memberships
from tests.support.graph_server import GraphServer

LEAD = 45.0
"""Seconds from the trigger to the leave instant: room for the triggered run on a loaded
machine (a two-person run has taken 18 s on the shared test VM)."""
LATE = 30.0
"""Largest accepted delay from the instant to the refused login: one timer run (the next
scheduled run is an hour away)."""


def can_log_in(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError as exc:
        assert "not permitted to log in" in str(exc), exc
        return False


def test_leaver_from_http_triggered_run_is_disabled_at_the_instant(
    tmp_path: Path, role_prefix: str, daemons: Callable[..., DaemonProc], pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = GraphServer(tmp_path / "graph").start()
    try:
        scenario(tmp_path, role_prefix, daemons, pg_dsn, monkeypatch, graph)
    finally:
        graph.stop()


def scenario(
    tmp_path: Path,
    p: str,
    daemons: Callable[..., DaemonProc],
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    graph: GraphServer,
) -> None:
    monkeypatch.setenv(secret := f"PROV_TEST_ENTRA_SECRET_{p.upper()}", graph.client_secret)
    graph.add_user("alice@contoso.com", **entra_person("Trading", "Equity Trader"))
    source = EntraSourceConfig.model_validate(
        {
            "type": "entra",
            "name": f"{p}entra",
            "tenant_id": graph.tenant,
            "client_id": graph.client_id,
            "client_secret": f"env:{secret}",
            "authority_host": graph.url,
            "graph_url": graph.url,
            "ca_file": str(graph.ca_file),
        }
    )
    setup = make_setup(tmp_path, TomlSource(source), p)  # type: ignore[arg-type]
    port = daemonize(setup, interval="1h")
    d = daemons(setup.path, port).wait_up()
    wait_for("alice's roles (the run at start)", lambda: memberships(p).get(f"{p}alice"))

    leave_at = (datetime.now(UTC) + timedelta(seconds=LEAD)).replace(microsecond=0)
    graph.add_user(
        "dave@contoso.com",
        **entra_person("Trading", "Equity Trader"),
        employeeLeaveDateTime=leave_at.isoformat().replace("+00:00", "Z"),
    )

    def triggered() -> dict[str, object] | None:
        code, body = d.request("POST", "/v1/runs", {"mode": "apply", "actor": "alice", "reason": "CHG-42"}, token=d.token)
        assert code in (200, 409), body
        return json.loads(body) if code == 200 else None

    result = wait_for("an applied HTTP-triggered run", triggered)
    assert result["applied_targets"] == [f"{p}pg"]
    assert memberships(p)[f"{p}dave"] == {f"{p}trade_executor", f"{p}trade_reader"}
    dave = " ".join(x for x in pg_dsn.split() if not x.startswith("user=")) + f" user={p}dave"
    assert datetime.now(UTC) < leave_at, "the trigger took too long for this test's lead time"
    assert can_log_in(dave), "before the leave instant dave logs in"

    timers = [e for e in d.events() if e.get("event") == "timers_set" and e.get("trigger") == "http"]
    assert timers and timers[-1]["timers"] >= 1 and timers[-1]["next"] == leave_at.isoformat()

    while datetime.now(UTC) < leave_at:
        time.sleep(0.2)
    disabled = wait_for("dave's login refused", lambda: not can_log_in(dave), timeout=30, every=0.2)
    late = (datetime.now(UTC) - leave_at).total_seconds()
    print(f"dave's login refused {late:.1f}s after the leave instant")
    assert disabled and late < LATE, f"dave was disabled {late:.1f}s after the leave instant"
    assert not memberships(p).get(f"{p}dave")
    runs = [e for e in d.events() if e.get("event") == "run_started"]
    assert [e["trigger"] for e in runs][-1] == "leave_timer"
    assert not [e for e in runs if e["trigger"] == "reconcile"][1:], "no scheduled run came in between"
    assert d.non_json_lines() == [], "log_format = json: every line is JSON"
