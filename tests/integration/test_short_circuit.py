"""The warm process's no-op short-circuit (issue 9) against a real slapd and
PostgreSQL: a repeated no-op run skips inspect + diff (and says so in its audit
record); a hand-made GRANT, a hand-made role with a desired name, a directory
change, a rules change and a crossed leave instant each force the full path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from provisioner.core.values.plan import ChangeKind, Plan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.run import apply_run, plan_run
from provisioner.engine.warm import WarmState
from provisioner.sources.incremental import IncrementalReader
from provisioner.store.state import StateStore
from tests.lifecycle.support import RELAXED, RULES, person
from tests.support import pg
from tests.support.e2e import Setup, make_setup
from tests.support.fixtures import LdapOu

T0 = datetime(2031, 1, 4, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    # entries written seconds ago fall inside the high-water mark's overlap and are re-read
    monkeypatch.setattr(IncrementalReader, "overlap", timedelta(0))


class Warm:
    """A daemon-like process: one state store, short-circuit allowed, runs kept in memory."""

    def __init__(self, s: Setup, store: StateStore) -> None:
        self.s, self.store = s, store
        self.warm = WarmState()

    def run(self, now: datetime, *, apply: bool = True) -> Plan:
        cfg = self.s.config()
        ctx = RunContext(now, "pytest", "schedule", store=self.store, warm=self.warm)
        with Targets(cfg) as targets:
            return apply_run(cfg, ctx, targets) if apply else plan_run(cfg, ctx, targets).plan

    def warmed(self, now: datetime = T0) -> Plan:
        first = self.run(now)
        assert first.has_changes and "short_circuit" not in first.meta
        again = self.run(now + timedelta(minutes=1))
        assert not again.has_changes and "short_circuit" not in again.meta  # the full run that found nothing
        noop = self.run(now + timedelta(minutes=2))
        assert not noop.has_changes and "short_circuit" in noop.meta
        return noop


@pytest.fixture
def warm(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> Iterator[Warm]:
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("dan", **person("Operations"))
    ldap_ou.add_user("cat", **person("Trading", "Equity Trader", hrLeaveDate="20310104"))  # leaves at its end
    s = make_setup(
        tmp_path, ldap_ou.config(name=f"{role_prefix}src"), role_prefix, rules=RULES, extra=RELAXED, drift="revoke"
    )
    cfg = s.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        yield Warm(s, store)
    finally:
        store.close()


def kinds(plan: Plan) -> set[tuple[ChangeKind, str]]:
    return {(c.kind, c.role) for c in plan.changes}


def admin(statement: str, *names: str) -> None:
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL(statement).format(*(sql.Identifier(n) for n in names)))


def test_second_noop_run_short_circuits_and_is_audited(warm: Warm) -> None:
    noop = warm.warmed()
    marker = noop.meta["short_circuit"]
    assert set(marker["catalog_digests"]) == {"pg"} and marker["mappings_digest"]
    planned = [r.content for r in warm.store.iter_audit(noop.meta["run_id"]) if r.content.get("kind") == "run_planned"]
    assert len(planned) == 1 and planned[0]["after"]["short_circuit"] == marker
    assert warm.run(T0 + timedelta(minutes=3)).meta.get("short_circuit")  # and keeps doing so


def test_hand_made_grant_to_a_managed_role_forces_the_full_path(warm: Warm, role_prefix: str) -> None:
    p = role_prefix
    warm.warmed()
    admin("CREATE ROLE {} NOLOGIN", f"{p}hand")
    admin("GRANT {} TO {}", f"{p}hand", f"{p}ann")
    plan = warm.run(T0 + timedelta(minutes=5), apply=False)
    assert "short_circuit" not in plan.meta
    assert (ChangeKind.REVOKE_MEMBERSHIP, f"{p}ann") in kinds(plan)


def test_hand_made_role_with_a_desired_name_forces_the_full_path(warm: Warm, role_prefix: str) -> None:
    p = role_prefix
    warm.warmed()
    admin("DROP ROLE {}", f"{p}dan")
    admin("CREATE ROLE {} NOLOGIN", f"{p}dan")  # no marker: not ours
    plan = warm.run(T0 + timedelta(minutes=5), apply=False)
    assert "short_circuit" not in plan.meta
    named = {c.role for c in plan.changes} | {n.role for t in plan.targets for n in t.notices}
    assert f"{p}dan" in named


def test_directory_change_forces_the_full_path(warm: Warm, ldap_ou: LdapOu, role_prefix: str) -> None:
    warm.warmed()
    ldap_ou.modify(ldap_ou.user_dn("dan"), departmentNumber="Trading", title="Bond Trader")
    plan = warm.run(T0 + timedelta(minutes=5), apply=False)
    assert "short_circuit" not in plan.meta
    assert (ChangeKind.GRANT_MEMBERSHIP, f"{role_prefix}dan") in kinds(plan)


def test_rules_change_forces_the_full_path(warm: Warm, role_prefix: str) -> None:
    p = role_prefix
    warm.warmed()
    rules = warm.s.path.parent / "mappings" / "rules" / "r.toml"
    rules.write_text(rules.read_text().replace(f'grant = ["{p}ops_settlement", ', "grant = ["))
    plan = warm.run(T0 + timedelta(minutes=5), apply=False)
    assert "short_circuit" not in plan.meta
    assert (ChangeKind.REVOKE_MEMBERSHIP, f"{p}dan") in kinds(plan)


def test_crossed_leave_instant_forces_the_full_path(warm: Warm, role_prefix: str) -> None:
    warm.warmed(datetime(2031, 1, 4, 23, 50, tzinfo=UTC))
    plan = warm.run(datetime(2031, 1, 5, 0, 0, 1, tzinfo=UTC), apply=False)
    assert "short_circuit" not in plan.meta
    assert (ChangeKind.ALTER_ROLE, f"{role_prefix}cat") in kinds(plan)


def _planned(warm: Warm, plan: Plan) -> dict[str, Any]:
    (record,) = [r.content for r in warm.store.iter_audit(plan.meta["run_id"]) if r.content.get("kind") == "run_planned"]
    return dict(record["after"])


def test_directory_change_on_an_unchanged_catalog_reuses_the_actual_state(
    warm: Warm, ldap_ou: LdapOu, role_prefix: str
) -> None:
    warm.warmed()
    ldap_ou.modify(ldap_ou.user_dn("dan"), departmentNumber="Trading", title="Bond Trader")
    plan = warm.run(T0 + timedelta(minutes=5))
    assert "short_circuit" not in plan.meta and set(plan.meta["reused_actual"]) == {"pg"}
    assert _planned(warm, plan)["reused_actual"] == plan.meta["reused_actual"]  # audited: why nothing was inspected
    assert (ChangeKind.GRANT_MEMBERSHIP, f"{role_prefix}dan") in kinds(plan)
    after = warm.run(T0 + timedelta(minutes=6))  # the apply changed the catalog: inspected again
    assert not after.has_changes and "reused_actual" not in after.meta and "short_circuit" not in after.meta


def test_hand_made_grant_with_a_directory_change_is_inspected_not_reused(
    warm: Warm, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    warm.warmed()
    admin("CREATE ROLE {} NOLOGIN", f"{p}hand")
    admin("GRANT {} TO {}", f"{p}hand", f"{p}ann")
    ldap_ou.modify(ldap_ou.user_dn("dan"), departmentNumber="Trading", title="Bond Trader")
    plan = warm.run(T0 + timedelta(minutes=5), apply=False)
    assert "reused_actual" not in plan.meta
    assert {(ChangeKind.REVOKE_MEMBERSHIP, f"{p}ann"), (ChangeKind.GRANT_MEMBERSHIP, f"{p}dan")} <= kinds(plan)


def test_reused_actual_state_still_sees_a_leavers_open_session(warm: Warm, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    admin("GRANT pg_signal_backend TO {}", warm.s.login)
    warm.warmed()
    dsn = " ".join(x for x in pg.admin_dsn().split() if not x.startswith("user=")) + f" user={p}ann"
    session = psycopg.connect(dsn, autocommit=True)  # opened after the catalog was last inspected
    try:
        ldap_ou.modify(ldap_ou.user_dn("ann"), hrStatus="terminated")
        plan = warm.run(T0 + timedelta(minutes=5))
        assert set(plan.meta["reused_actual"]) == {"pg"}
        assert (ChangeKind.TERMINATE_SESSIONS, f"{p}ann") in kinds(plan)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()


def test_warm_state_is_the_daemons_own_object(warm: Warm) -> None:
    """The short-circuit's evidence lives in the WarmState the daemon passes in, not in the
    process: another daemon (a fresh WarmState) or a CLI run (none) in the same process
    plans in full."""
    warm.warmed()
    other = Warm(warm.s, warm.store)
    assert "short_circuit" not in other.run(T0 + timedelta(minutes=3)).meta
    cfg = warm.s.config()
    ctx = RunContext(T0 + timedelta(minutes=4), "pytest", "manual", store=warm.store)
    assert ctx.warm is None and not ctx.short_circuit
    with Targets(cfg) as targets:
        assert "short_circuit" not in plan_run(cfg, ctx, targets).plan.meta
    assert "short_circuit" in warm.run(T0 + timedelta(minutes=5)).meta  # the first daemon's evidence stands


def test_fresh_inspect_after_an_unrelated_catalog_change_reuses_the_diff_per_person(
    warm: Warm, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """A role created elsewhere in the cluster moves the digest: the run inspects afresh, but
    every unchanged role is the same object again, so only the mover is diffed (issue 19)."""
    p = role_prefix
    assert warm.run(T0).has_changes
    assert warm.warm.last is not None and not warm.warm.last.plan.changes  # the changes are not kept
    assert not warm.run(T0 + timedelta(minutes=1)).has_changes
    before = warm.warm.last.actual["pg"].roles if warm.warm.last else {}
    admin("CREATE ROLE {} NOLOGIN", f"{p}unrelated")
    ldap_ou.modify(ldap_ou.user_dn("dan"), departmentNumber="Trading", title="Bond Trader")
    hits = warm.warm.diffs.hits
    plan = warm.run(T0 + timedelta(minutes=2), apply=False)
    assert "reused_actual" not in plan.meta and "short_circuit" not in plan.meta
    assert warm.warm.last is not None and warm.warm.last.actual["pg"].roles[f"{p}ann"] is before[f"{p}ann"]
    assert warm.warm.diffs.hits - hits >= 2  # ann and cat: served from the memo
    assert warm.warm.scripts is not None and warm.warm.unicode() is warm.warm.scripts  # read once, kept
    cfg = warm.s.config()
    with Targets(cfg) as targets:
        cold = plan_run(cfg, RunContext(T0 + timedelta(minutes=2), "pytest", "manual", store=warm.store), targets)
    assert plan.changes == cold.plan.changes and (ChangeKind.GRANT_MEMBERSHIP, f"{p}dan") in kinds(plan)
