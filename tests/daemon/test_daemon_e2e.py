"""The daemon as a subprocess against a real slapd and PostgreSQL: scheduled
reconciliation, a directory change picked up by the next run, metrics, the
authenticated trigger, and the run history commands."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.support import EXE, TRIGGER_TOKEN, DaemonProc, daemonize, one_trader, wait_for
from tests.integration.test_reconcile_e2e import person
from tests.support.e2e import memberships
from tests.support.fixtures import LdapOu

TOKEN = TRIGGER_TOKEN


def metrics(d: DaemonProc) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    code, body = d.request("GET", "/metrics")
    assert code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_reconciles_on_schedule_and_picks_up_directory_changes(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    setup = one_trader(tmp_path, ldap_ou, p)
    port = daemonize(setup)
    d = daemons(setup.path, port).wait_up()

    wait_for("alice's roles", lambda: memberships(p).get(f"{p}alice"))
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader"}

    # a directory change shows up at the next scheduled run, with no trigger
    ldap_ou.add_user("bob", **person("Operations", "Settlements Analyst"))
    wait_for("bob's roles", lambda: memberships(p).get(f"{p}bob"))
    assert memberships(p)[f"{p}bob"] == {f"{p}ops_settlement", f"{p}trade_reader"}

    # metrics: scraped and parsed
    def two_ok_runs() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        m = metrics(d)
        return m if m.get("provisioner_runs_total", {}).get((("outcome", "ok"),), 0) >= 2 else None

    m = wait_for("a second successful run in the metrics", two_ok_runs)
    assert m["provisioner_identities_seen"][()] == 2
    assert m["provisioner_changes_total"][(("kind", "grant_membership"),)] >= 4
    assert m["provisioner_changes_total"][(("kind", "create_role"),)] >= 2
    assert m["provisioner_last_success_timestamp_seconds"][(("target", f"{p}pg"),)] > 0
    assert m["provisioner_run_duration_seconds_count"][()] >= 2
    assert "provisioner_breaker_trips_total" in m and "provisioner_leaver_latency_seconds_count" in m

    # nothing changes any more: later runs short-circuit, and say so in the metrics
    def short_circuited() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        m = metrics(d)
        return m if m.get("provisioner_run_shortcuts_total", {}).get((("shortcut", "short_circuit"),), 0) else None

    wait_for("a short-circuited run in the metrics", short_circuited)

    # readiness and liveness
    code, ready = d.get_json("/readyz")
    assert code == 200 and ready["ready"] is True
    assert ready["checks"]["leader"] == {f"{p}pg": True}

    # the trigger: missing or wrong token refused, the right one returns the plan
    assert d.request("POST", "/v1/runs", {"mode": "plan"})[0] == 401
    assert d.request("POST", "/v1/runs", {"mode": "plan"}, token="wrong")[0] == 401
    assert d.request("POST", "/v1/runs", {"mode": "plan"}, token=TOKEN + "x")[0] == 401
    ldap_ou.add_user("carol", **person("Trading", "FX Trader"))

    code, body = d.request("POST", "/v1/runs", {"mode": "plan"}, token=TOKEN)
    assert code == 400 and json.loads(body)["error"].startswith('"actor" is required'), body  # who asks

    def triggered() -> dict[str, object] | None:
        code, body = d.request("POST", "/v1/runs", {"mode": "plan", "actor": "alice", "reason": "INC-7"}, token=TOKEN)
        assert code in (200, 409), body  # 409: a scheduled run was in progress
        return json.loads(body) if code == 200 else None

    result = wait_for("a triggered plan", triggered)
    assert result["mode"] == "plan" and result["applied_targets"] == []
    plan = result["plan"]
    assert isinstance(plan, dict) and plan["identities_seen"] in (2, 3)
    assert d.request("POST", "/v1/runs", {"mode": "bogus", "actor": "alice"}, token=TOKEN)[0] == 400

    # run history through the CLI
    run_id = str(result["run_id"])
    out = subprocess.run(
        [str(EXE), "runs", "list", "-c", str(setup.path), "--limit", "5"], capture_output=True, text=True, check=True
    ).stdout
    assert "RUN ID" in out and "reconcile" in out
    shown = subprocess.run(
        [str(EXE), "runs", "show", "-c", str(setup.path), run_id, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(shown)
    assert data["trigger"] == "http" and data["outcome"] == "ok"
    assert [a["kind"] for a in data["audit"]] == ["run_planned", "run_finished", "run_recorded"]
    assert data["actor"].startswith("alice via ") and data["actor"].endswith(f"/{d.pid}")
    assert {a["reason"] for a in data["audit"] if a["kind"] == "run_planned"} == {"INC-7"}
    missing = subprocess.run(
        [str(EXE), "runs", "show", "-c", str(setup.path), "no-such-run"], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "no run 'no-such-run'" in missing.stderr


def test_plan_mode_never_applies_and_refuses_apply_trigger(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    setup = one_trader(tmp_path, ldap_ou, p)
    port = daemonize(setup, mode="plan")
    d = daemons(setup.path, port).wait_up()
    wait_for("two planned runs", lambda: sum(1 for e in d.events() if e.get("event") == "run_finished") >= 2)
    assert memberships(p) == {}, "plan mode must not change the target"
    code, body = d.request("POST", "/v1/runs", {"mode": "apply", "actor": "alice", "reason": "CHG-1"}, token=TOKEN)
    assert code == 403 and b"only plans" in body
    assert memberships(p) == {}
