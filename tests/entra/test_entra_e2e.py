"""The LDAP joiner/mover/leaver scenario, driven by Entra ID data through the
local Graph server into the real PostgreSQL: the same grants at the end.
``apply`` runs with the state store (delta path); ``plan`` without (full path)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.config import EntraSourceConfig
from provisioner.engine.connections import Targets
from provisioner.engine.run import plan_run
from provisioner.errors import SourceUnavailable
from provisioner.store.state import StateStore
from tests.support.e2e import Setup, make_setup, memberships, role_options
from tests.support.graph_server import GraphServer

Make = Callable[..., EntraSourceConfig]


class TomlSource:
    """What tests.support.e2e.source_toml reads, for an Entra source config."""

    bind_password = None

    def __init__(self, cfg: EntraSourceConfig) -> None:
        self.cfg = cfg

    def model_dump(self, exclude_none: bool = True) -> dict[str, object]:
        return self.cfg.model_dump(exclude_none=exclude_none, mode="json")


def person(dept: str, title: str) -> dict[str, str]:
    return {"department": dept, "jobTitle": title, "employeeType": "Employee"}


def same_plan_both_paths(setup: Setup) -> None:
    """The delta-fed plan (state store) equals the full-read plan (no store)."""
    now = datetime.now(UTC)
    full = sorted(c.describe() for c in setup.plan(now=now).changes)
    assert full, "the scenario step must plan something"
    assert delta_plan_changes(setup, now) == full


def delta_plan_changes(setup: Setup, now: datetime) -> list[str]:
    cfg = setup.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        with Targets(cfg) as targets:
            plan = plan_run(cfg, setup.ctx(cfg, store, now), targets).plan
    finally:
        store.close()
    return sorted(c.describe() for c in plan.changes)


def test_three_syncs_joiners_movers_leavers_from_entra(
    tmp_path: Path, graph: GraphServer, entra_config: Make, role_prefix: str
) -> None:
    p = role_prefix
    alice = graph.add_user("alice@contoso.com", **person("Trading", "Equity Trader"))
    bob = graph.add_user("bob@contoso.com", **person("Operations", "Settlements Analyst"))
    carol = graph.add_user("carol@contoso.com", **person("Trading", "Head of Trading"))
    inner = graph.add_group("desk-heads", [carol])
    graph.add_group("approvers", [inner])  # nested: carol approves through desk-heads
    setup = make_setup(tmp_path, TomlSource(entra_config(page_size=2)), p)  # type: ignore[arg-type]

    # sync 1: joiners (a fresh delta round, kept in the state store)
    plan = setup.apply()
    assert plan.has_changes
    assert memberships(p) == {
        f"{p}alice": {f"{p}trade_executor", f"{p}trade_reader"},
        f"{p}bob": {f"{p}ops_settlement", f"{p}trade_reader"},
        f"{p}carol": {f"{p}trade_approver"},
    }
    assert role_options(f"{p}alice") == (True, None)
    assert not setup.plan().has_changes, "a full read after the delta-fed apply must plan nothing"

    # sync 2: alice moves to operations; dave joins
    graph.update_user(alice, department="Operations", jobTitle="Operations Analyst")
    graph.add_user("dave@contoso.com", **person("Trading", "FX Trader"))
    same_plan_both_paths(setup)
    plan = setup.apply()
    kinds = sorted((c.kind.value, c.role, str(c.param("group"))) for c in plan.changes)
    assert ("revoke_membership", f"{p}alice", f"{p}trade_executor") in kinds
    assert ("grant_membership", f"{p}alice", f"{p}ops_settlement") in kinds
    revoke = next(c for c in plan.changes if c.kind.value == "revoke_membership")
    assert revoke.reasons[0].rule == "lifecycle:mover"
    assert memberships(p)[f"{p}alice"] == {f"{p}ops_settlement", f"{p}trade_reader"}
    assert memberships(p)[f"{p}dave"] == {f"{p}trade_executor", f"{p}trade_reader"}

    # sync 3: bob's account disabled in Entra, dave deleted (@removed in the delta)
    graph.update_user(bob, accountEnabled=False)
    dave = next(u for u, rec in graph.users.items() if rec["userPrincipalName"].startswith("dave@"))
    graph.delete_user(dave)
    same_plan_both_paths(setup)
    now = datetime.now(UTC)
    setup.apply(now=now)
    after = memberships(p)
    for leaver in ("bob", "dave"):
        assert f"{p}{leaver}" not in after, f"{leaver} kept memberships"
        login, valid_until = role_options(f"{p}{leaver}")  # type: ignore[misc]
        assert login is False and valid_until is not None and valid_until <= datetime.now(UTC)
    assert after[f"{p}alice"] == {f"{p}ops_settlement", f"{p}trade_reader"}
    assert after[f"{p}carol"] == {f"{p}trade_approver"}
    assert not setup.plan().has_changes
    assert graph.requests_to("/v1.0/users/delta"), "apply used delta queries"


def test_failing_page_aborts_before_planning(
    tmp_path: Path, graph: GraphServer, entra_config: Make, role_prefix: str
) -> None:
    p = role_prefix
    hank = graph.add_user("hank@contoso.com", **person("Trading", "Equity Trader"))
    ivy = graph.add_user("ivy@contoso.com", **person("Operations", "Clerk"))
    setup = make_setup(tmp_path, TomlSource(entra_config(page_size=1, max_retries=1)), p)  # type: ignore[arg-type]
    setup.apply()
    before = memberships(p)
    graph.delete_user(hank)
    graph.update_user(ivy, department="Legal")  # two changes: two delta pages of one
    graph.fail_next(100, 503, path="/v1.0/users/delta", skip=1)
    with pytest.raises(SourceUnavailable, match="nothing read from this source is used"):
        setup.apply()
    assert memberships(p) == before, "nothing may be revoked from a partial read"
