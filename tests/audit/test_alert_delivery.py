"""Alerts delivered to a real HTTP webhook and a real SMTP server (STARTTLS) on loopback:
sensitive grants, the rapid-change window across runs, failure streaks, dedup, rate limits,
and a channel that is down."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from provisioner.alerts import dispatch_alerts, run_alerts
from provisioner.core.governance.alerts import Alert, Severity
from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.store.state import StateStore
from tests.audit.servers import Mailbox, closed_port, smtp_server, webhook_server
from tests.audit.support import alert_config, grant

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def channels_toml(hook_url_env: str, box: Mailbox | None, extra: str = "") -> str:
    email = ""
    if box is not None:
        email = f"""
[alerts.email]
host = "127.0.0.1"
port = {box.port}
from = "provisioner@example.test"
to = ["security@example.test", "iam@example.test"]
username = "alerts"
password = "env:TEST_SMTP_PASSWORD"
ca_file = "{box.ca_file}"
"""
    return f"""
[alerts]
rapid_change_count = 3
rapid_change_window = "1h"
timeout = 3
retry_backoff = "0s"
{extra}

[[alerts.webhooks]]
name = "sec"
url = "env:{hook_url_env}"
{email}
"""


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-pw")


def test_sensitive_grant_reaches_webhook_and_smtp_over_starttls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: None
) -> None:
    with webhook_server() as hook, smtp_server(tmp_path) as box:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        cfg = alert_config(tmp_path / "cfg", channels_toml("TEST_HOOK", box))
        store = StateStore(cfg.state.url)
        try:
            store.append([
                grant("run-1", NOW, "jdoe", "trade_approver"),
                grant("run-1", NOW, "jdoe", "trade_reader"),  # medium: no alert
                grant("run-1", NOW, "asmith", "trade_executor", "revoke_membership"),
            ])
            with capture_logs() as logs:
                alerts = run_alerts(cfg, store, "run-1", now=NOW)
        finally:
            store.close()
    assert sorted(a.title for a in alerts) == [
        "Sensitive role trade_approver granted to jdoe",
        "Sensitive role trade_executor revoked from asmith",
    ]
    assert [a.severity for a in sorted(alerts, key=lambda a: a.title)] == [Severity.CRITICAL, Severity.WARNING]
    texts = sorted(b["text"] for b in hook.bodies)
    assert len(texts) == 2 and texts[0].startswith("[CRITICAL] Sensitive role trade_approver granted to jdoe")
    assert all(b["alert"]["facts"]["run_id"] == "run-1" for b in hook.bodies)
    assert sorted(m["Subject"].strip() for m in box.messages) == [
        "[provisioner critical] Sensitive role trade_approver granted to jdoe",
        "[provisioner warning] Sensitive role trade_executor revoked from asmith",
    ]
    assert box.tls_sessions == 2 and box.logins == ["alerts", "alerts"]
    assert box.messages[0]["To"] == "security@example.test, iam@example.test"
    assert [e["event"] for e in logs].count("alert") == 2
    assert [e["event"] for e in logs].count("alert_sent") == 4
    assert not any("s3cret" in repr(e) for e in logs)


def test_rapid_change_window_counts_across_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        cfg = alert_config(tmp_path, channels_toml("TEST_HOOK", None, 'min_sensitivity = "critical"'))
        store = StateStore(cfg.state.url)
        try:
            # outside the 1h window, and a non-sensitive one inside: not counted
            store.append([grant("old", NOW - timedelta(minutes=61), f"u{i}", "trade_approver") for i in range(5)])
            store.append([grant("r1", NOW - timedelta(minutes=40), "a", "trade_approver")])
            store.append([grant("low", NOW - timedelta(minutes=5), "u9", "trade_executor")])
            store.append([grant("r2", NOW, "b", "trade_approver"), grant("r2", NOW, "c", "trade_approver")])
            first = run_alerts(cfg, store, "r2", now=NOW)  # 3 in the window: not more than 3
            store.append([grant("r3", NOW + timedelta(minutes=1), "d", "trade_approver")])
            second = run_alerts(cfg, store, "r3", now=NOW + timedelta(minutes=1))  # 4 > 3
            store.append([grant("r4", NOW + timedelta(minutes=2), "e", "trade_approver")])
            third = run_alerts(cfg, store, "r4", now=NOW + timedelta(minutes=2))  # dedup: not sent again
        finally:
            store.close()
    burst = f"rapid_change:{(NOW - timedelta(minutes=40)).isoformat()}"  # named by its first change
    assert not any(a.key.startswith("rapid_change") for a in first)
    rapid = [a for a in second if a.key.startswith("rapid_change")]
    assert len(rapid) == 1 and rapid[0].facts["changes"] == "4" and rapid[0].key == burst
    assert burst in {a.key for a in third}
    sent = [b["alert"]["key"] for b in hook.bodies]
    assert sent.count(burst) == 1
    assert len([k for k in sent if k.startswith("sensitive:")]) == 4  # b, c, d, e


def test_failure_streak_alert_after_three_failed_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        cfg = alert_config(tmp_path, channels_toml("TEST_HOOK", None))
        store = StateStore(cfg.state.url)
        found = []
        try:
            for i in range(4):
                rid = store.start_run("schedule", "svc", "apply")
                store.append([AuditEvent(rid, NOW, "svc", "schedule", EventKind.RUN_FAILED,
                                         reason="source 'hr' returned no identities",
                                         after={"error": "SourceUnhealthy"})])
                store.finish_run(rid, "failed", {}, "boom")
                found.append([a.key for a in run_alerts(cfg, store, rid, now=NOW + timedelta(minutes=i))])
        finally:
            store.close()
    assert found[:2] == [[], []]
    assert found[2] == ["source_unhealthy"] and found[3] == ["source_unhealthy"]
    assert [b["alert"]["key"] for b in hook.bodies] == ["source_unhealthy"]  # the 4th is deduplicated
    assert hook.bodies[0]["text"].startswith("[CRITICAL] provisioner: source unhealthy 3 runs in a row")


def test_a_down_channel_is_logged_and_others_still_deliver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: None
) -> None:
    monkeypatch.setenv("TEST_HOOK", f"http://127.0.0.1:{closed_port()}/hook")
    with smtp_server(tmp_path) as box:
        cfg = alert_config(tmp_path / "cfg", channels_toml("TEST_HOOK", box))
        store = StateStore(cfg.state.url)
        alert = Alert(Severity.CRITICAL, "breaker:pg", "Circuit breaker tripped on pg", "stopped", {"target": "pg"})
        try:
            with capture_logs() as logs:
                counts = dispatch_alerts([alert], cfg.alerts, store, now=NOW)
        finally:
            store.close()
    assert (counts.sent, counts.failed, counts.queued, counts.down) == (1, 3, 1, ["webhook:sec"])  # 3 attempts
    failed = [e for e in logs if e["event"] == "alert_channel_failed"]
    assert len(failed) == 1 and failed[0]["channel"] == "webhook:sec" and failed[0]["attempts"] == 3
    assert "Connection refused" in failed[0]["error"]
    assert [m["Subject"] for m in box.messages] == [
        "[provisioner critical] Circuit breaker tripped on pg",
        "[provisioner critical] Alerts cannot be delivered to webhook:sec",  # the failure, on the other channel
    ]


def test_smtp_without_starttls_is_refused_not_sent_in_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server offering no STARTTLS (here: a plain HTTP port) fails the channel, never the caller."""
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        port = int(hook.url.split(":")[2].split("/")[0])
        cfg = alert_config(tmp_path, channels_toml("TEST_HOOK", None, f"""
[alerts.email]
host = "127.0.0.1"
port = {port}
from = "p@example.test"
to = ["s@example.test"]
"""))
        with capture_logs() as logs:
            counts = dispatch_alerts([Alert(Severity.WARNING, "k", "t", "b")], cfg.alerts, None, now=NOW)
    assert counts.failed == 3 and counts.sent == 1
    assert [e["channel"] for e in logs if e["event"] == "alert_channel_failed"] == ["email"]


def test_dedup_and_rate_limit_per_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        cfg = alert_config(tmp_path, channels_toml("TEST_HOOK", None, "max_per_hour = 2\ndedup_window = \"30m\""))
        store = StateStore(cfg.state.url)
        a = [Alert(Severity.WARNING, f"k{i}", f"t{i}", "b") for i in range(3)]
        try:
            with capture_logs() as logs:
                c1 = dispatch_alerts([a[0], a[0]], cfg.alerts, store, now=NOW)
                c2 = dispatch_alerts([a[1], a[2]], cfg.alerts, store, now=NOW + timedelta(minutes=1))
                c3 = dispatch_alerts([a[0]], cfg.alerts, store, now=NOW + timedelta(minutes=31))
                c4 = dispatch_alerts([a[2]], cfg.alerts, store, now=NOW + timedelta(minutes=62))
        finally:
            store.close()
    assert (c1.sent, c1.suppressed, c1.held) == (1, 1, 0)
    assert (c2.sent, c2.held) == (2, 1)  # k1, then k2 held back and the digest naming it
    assert (c3.sent, c3.held) == (0, 1)  # dedup over, hour not; the hour's digest already went out
    assert (c4.sent, c4.held) == (1, 0)
    assert [b["alert"]["key"] for b in hook.bodies] == ["k0", "k1", "rate_limited_digest:webhook:sec:2026-03-02T12", "k2"]
    assert "t2" in hook.bodies[2]["alert"]["body"]
    assert [e["event"] for e in logs].count("alert_rate_limited") == 2


def test_a_failing_run_reaches_the_channels_once_not_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's job-failure warning and the run's own ``run_failing`` alert describe one
    incident: a temporary failure recorded as a run goes out as ``run_failing`` only; one
    that never became a run, and a permanent one (the job is paused), still go out."""
    from provisioner.daemon.alerting import JobFailure, alert_job_failure
    from provisioner.engine.context import RunContext
    from provisioner.engine.record import recorded_run
    from provisioner.errors import SourceUnavailable

    with webhook_server() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        cfg = alert_config(tmp_path / "cfg", channels_toml("TEST_HOOK", None, "failure_streak = 1"))
        store = StateStore(cfg.state.url)
        try:
            ctx = RunContext(NOW, "daemon", "schedule", store=store)
            with pytest.raises(SourceUnavailable) as caught, recorded_run(ctx, "apply", cfg):
                raise SourceUnavailable("ldap://127.0.0.1:1: connection refused")
            assert caught.value.run_id == ctx.run_id
            assert [b["alert"]["key"] for b in hook.bodies] == ["source_unhealthy"]  # the run's own alert
            failure = JobFailure("reconcile", "SourceUnavailable", "refused", False, 3, NOW, caught.value.run_id)
            alert_job_failure(failure, cfg, store)
            assert len(hook.bodies) == 1  # covered by the run's alert: not sent again
            alert_job_failure(JobFailure("review", "TargetUnavailable", "down", False, 3, NOW), cfg, store)
            alert_job_failure(JobFailure("reconcile", "RuleError", "bad", True, 1, NOW, ctx.run_id), cfg, store)
            keys = [b["alert"]["key"] for b in hook.bodies[1:]]
            assert keys == ["daemon_job_failed:review:TargetUnavailable", "daemon_job_failed:reconcile:RuleError"]
        finally:
            store.close()


def test_a_webhook_url_is_never_in_an_error_a_log_or_another_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E2E finding (session 14): a webhook URL secret with whitespace inside it (pasted across a
    line break) failed with http.client's ``InvalidURL: URL can't contain control characters.
    '/hook/T0SECRET... x'``: the URL's path, which for Slack and Teams IS the credential, went into
    the log, the outbox's last_error and the "Alerts cannot be delivered" alert sent on the other
    channels. docs/alerts.md: never the URL or password. (A trailing newline is stripped.)"""
    secret = "T0SECRET/B0SECRET/xoxb0secrettoken"
    with webhook_server() as hook, webhook_server() as other:
        extra = '[[alerts.webhooks]]\nname = "other"\nurl = "env:TEST_OTHER"\n'
        cfg = alert_config(tmp_path, channels_toml("TEST_HOOK", None, "retry_attempts = 1\n" + extra))
        monkeypatch.setenv("TEST_OTHER", other.url)
        store = StateStore(cfg.state.url)
        try:
            with capture_logs() as logs:
                # the usual trailing newline: delivered (a URL never ends in whitespace)
                monkeypatch.setenv("TEST_HOOK", f"{hook.url}/{secret}\n")
                dispatch_alerts([Alert(Severity.CRITICAL, "k1", "t1", "b")], cfg.alerts, store, now=NOW)
                # whitespace inside: fails, naming the reference only
                monkeypatch.setenv("TEST_HOOK", f"{hook.url}/{secret} x")
                counts = dispatch_alerts([Alert(Severity.CRITICAL, "k2", "t2", "b")], cfg.alerts, store,
                                         now=NOW + timedelta(minutes=1))
            with store.engine.connect() as conn:
                errors = [str(r[0]) for r in conn.exec_driver_sql(
                    "SELECT last_error FROM provisioner_alert_outbox WHERE last_error IS NOT NULL")]
        finally:
            store.close()
    assert [b["alert"]["key"] for b in hook.bodies] == ["k1"]
    assert counts.down == ["webhook:sec"]
    assert "alert_delivery_failed:webhook:sec" in [b["alert"]["key"] for b in other.bodies]
    assert errors and all("env:TEST_HOOK" in e for e in errors), errors
    leaked = [repr(e) for e in logs if secret in repr(e)] + [e for e in errors if secret in e]
    leaked += [json.dumps(b) for b in other.bodies if secret in json.dumps(b)]
    assert not leaked, leaked
