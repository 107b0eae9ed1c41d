"""Planning returns values (issue 18): a plan run appends nothing to the audit trail; what it
found (SoD violations, the ``run_planned`` record) is appended by the run recorder when the run
closes, in the order and with the content a run always recorded.  ``plan`` and ``explain``
send no alert, a scheduled (daemon) run's violation does.  Real slapd, PostgreSQL, and a real
webhook on loopback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner.cli import cli
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.record import recorded_run
from provisioner.engine.run import plan_run
from provisioner.store.state import StateStore
from tests.audit.servers import webhook_server
from tests.sod.test_sod_e2e import setup_with_sod
from tests.support.e2e import Setup, person
from tests.support.fixtures import LdapOu

ALERTS = """
[alerts]
timeout = 2
retry_attempts = 1
retry_backoff = "0s"

[[alerts.webhooks]]
name = "sec"
url = "env:TEST_PLAN_HOOK"
"""


def _violating(tmp_path: Path, ldap_ou: LdapOu, p: str) -> Setup:
    """alice trades and, after the first apply, joins the approvers: an SoD violation."""
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    bob = ldap_ou.add_user("bob", **person("Legal", "Counsel"))
    ldap_ou.add_group("approvers", [bob])
    setup = setup_with_sod(tmp_path, ldap_ou, p)
    with setup.path.open("a") as f:
        f.write(ALERTS)
    setup.apply()
    ldap_ou.modify(ldap_ou.group_dn("approvers"), member=[bob, alice])
    return setup


def _records(store: StateStore, run_id: str) -> list[dict[str, Any]]:
    return [r.content for r in store.iter_audit() if r.content.get("run_id") == run_id]


def _comparable(content: dict[str, Any]) -> dict[str, Any]:
    """Without the time, the run, and the count of other installations' roles (other suites
    create and drop roles on the shared cluster meanwhile)."""
    out = {k: v for k, v in content.items() if k not in ("at", "run_id")}
    after = out.get("after")
    if isinstance(after, dict) and "notices" in after:
        out["after"] = {**after, "notices": [n for n in after["notices"] if n.get("code") != "foreign"]}
    return out


def test_a_plan_run_appends_nothing_until_the_run_closes(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = role_prefix
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_PLAN_HOOK", hook.url)
        setup = _violating(tmp_path, ldap_ou, p)
        cfg = setup.config()
        # the reference: the same plan as the CLI records it (violation, run_planned, end of run)
        runner = CliRunner()
        result = runner.invoke(cli, ["plan", "-c", str(setup.path)])
        assert result.exit_code == 0, result.output
        store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
        try:
            cli_run = [r.content for r in store.iter_audit()][-1]["run_id"]
            reference = _records(store, cli_run)
            assert [r["kind"] for r in reference] == ["violation", "run_planned", "run_finished", "run_recorded"]

            before = len(list(store.iter_audit()))
            ctx = RunContext(datetime.now(UTC), "pytest", "schedule", store=store)
            with recorded_run(ctx, "plan", cfg) as run, Targets(cfg) as targets:
                outcome = plan_run(cfg, ctx, targets)
                assert len(list(store.iter_audit())) == before, "planning appended audit records"
                assert [e.kind.value for e in outcome.events] == ["violation", "run_planned"]
                assert outcome.violations and outcome.violations[0].user == f"{p}alice"
                run.keep(outcome.events)
                assert len(list(store.iter_audit())) == before, "held events are appended when the run closes"
            recorded = _records(store, ctx.run_id)
            assert [r["kind"] for r in recorded] == [r["kind"] for r in reference]
            assert [_comparable(r) for r in recorded[:2]] == [
                {**_comparable(r), "actor": "pytest", "trigger": "schedule"} for r in reference[:2]
            ]
            # a scheduled run evaluates alerts once at its close: the violation reaches the webhook
            assert [b["alert"]["key"] for b in hook.bodies if "sod" in b["alert"]["key"]], hook.bodies
        finally:
            store.close()


def test_plan_and_explain_send_no_alert_even_with_a_violation(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = role_prefix
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_PLAN_HOOK", hook.url)
        setup = _violating(tmp_path, ldap_ou, p)
        cfg = setup.config()
        runner = CliRunner()
        explained = runner.invoke(cli, ["explain", "-c", str(setup.path), "alice"])
        assert explained.exit_code == 0, explained.output
        assert "sod_violation" in explained.output, explained.output
        planned = runner.invoke(cli, ["plan", "-c", str(setup.path)])
        assert planned.exit_code == 0, planned.output
        assert hook.bodies == []
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        assert store.outbox.depth() == 0
        kinds = [r.content["kind"] for r in store.iter_audit()]
        assert kinds.count("violation") == 1, "plan recorded its violation, explain recorded nothing"
    finally:
        store.close()
    # an apply appends what planning found once, before its first change (write-ahead order)
    applied = setup.apply()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        kinds = [r["kind"] for r in _records(store, str(applied.meta["run_id"]))]
    finally:
        store.close()
    assert kinds[:3] == ["violation", "run_planned", "apply_intent"], kinds
