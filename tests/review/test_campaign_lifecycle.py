"""Campaign lifecycle against a real (SQLite) state store: due date reminders, escalation
to the role owner once overdue, delegation rules, sign-off refused while items are open,
decisions frozen after sign-off, each step an audit record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.core.governance.review import Decision, ReviewItem, decision_problem, item_id
from provisioner.engine.context import RunContext
from provisioner.review.campaign import delegate, reminders, sign_off, store_decisions
from provisioner.review.store import CampaignError, ReviewStore
from provisioner.store.state import StateStore

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def item(identity: str, access: str, reviewer: str) -> ReviewItem:
    return ReviewItem("2026-Q4", item_id("2026-Q4", "pg", identity, access), "pg", identity, f"id-{identity}",
                      identity, access, "", "high", "rule", ("desk",), (("department", "Trading"),), (), "", reviewer)


def test_reminders_escalation_delegation_signoff(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        rs = ReviewStore(store)
        rs.create("2026-Q4", "tester", "manager", {})
        items = [item("alice", "trade_executor", "carol"), item("bob", "trade_approver", "carol"),
                 item("carol", "trade_approver", "carol")]
        rs.add_items("2026-Q4", items, {})
        rs.set_due("2026-Q4", NOW + timedelta(days=30))
        owners = {"trade_executor": "head-of-trading", "trade_approver": "cco"}

        before = reminders(store, NOW, owners)
        assert [(a.severity.value, a.facts.get("reviewer")) for a in before] == [("info", "carol")]
        late = reminders(store, NOW + timedelta(days=31), owners)
        escalated = {a.facts["escalate_to"]: a for a in late if "escalate_to" in a.facts}
        assert set(escalated) == {"head-of-trading", "cco"}
        assert "alice: trade_executor (reviewer carol)" in escalated["head-of-trading"].body

        ctx = RunContext(NOW, "carol (review web)", "review", store=store)
        # a job title as reviewer: its item cannot be decided until a campaign owner reassigns it
        rs.create("2026-Q3", "tester", "owner", {"unresolved_reviewers": ["head-of-trading"]})
        q3 = ReviewItem("2026-Q3", "i-q3", "pg", "alice", "id-alice", "alice", "trade_executor", "", "high", "rule",
                        (), (), (), "", "head-of-trading")
        rs.add_items("2026-Q3", [q3], {"unresolved_reviewers": ["head-of-trading"]})
        assert "no person in the directory" in decision_problem(
            q3, "head-of-trading", "keep", "", rs.delegations("2026-Q3"), rs.unresolved("2026-Q3"))
        delegate(rs, "2026-Q3", "head-of-trading", "dan", "desk head on leave", ctx, by="olivia")
        assert decision_problem(q3, "dan", "keep", "", rs.delegations("2026-Q3"), rs.unresolved("2026-Q3")) == ""
        with pytest.raises(CampaignError, match="another reviewer"):
            delegate(rs, "2026-Q4", "carol", "carol", "", ctx)
        with pytest.raises(CampaignError, match="no directory user"):
            delegate(rs, "2026-Q4", "carol", "ghost", "", ctx, lambda name: name != "ghost")
        decided = [Decision(items[0].item_id, "revoke", "moved", "carol", 1),
                   Decision(items[1].item_id, "keep", "", "carol", 2)]
        store_decisions(rs, "2026-Q4", decided, ctx, 90, "test")
        assert [e.access for e in rs.exclusions(NOW)] == ["trade_executor"]
        assert rs.exclusions(NOW + timedelta(days=91)) == [], "time-boxed"
        delegate(rs, "2026-Q4", "carol", "dan", "her own item", ctx)
        assert [a.facts.get("reviewer") for a in reminders(store, NOW, owners) if a.facts["campaign"] == "2026-Q4"
                ] == ["dan"]

        with pytest.raises(CampaignError, match="1 item\\(s\\) still open"):
            sign_off(rs, "2026-Q4", "olivia", "done", ctx)
        store_decisions(rs, "2026-Q4", [Decision(items[2].item_id, "keep", "", "dan", 1)], ctx, 90, "test")
        summary = sign_off(rs, "2026-Q4", "olivia", "Q4 complete", ctx)
        assert summary["revoke"] == 1 and summary["keep"] == 2
        with pytest.raises(CampaignError, match="frozen"):
            store_decisions(rs, "2026-Q4", [Decision(items[1].item_id, "revoke", "late", "carol", 1)], ctx, 90, "x")
        with pytest.raises(CampaignError, match="already signed off"):
            sign_off(rs, "2026-Q4", "olivia", "again", ctx)
        assert [a for a in reminders(store, NOW + timedelta(days=40), owners) if a.facts["campaign"] == "2026-Q4"
                ] == [], "a closed campaign reminds nobody"
        kinds = [r.content for r in store.iter_audit() if r.content["kind"] == "review"]
        assert len(kinds) == 6  # 3 decisions, 2 delegations, 1 sign-off
        assert any(k["after"].get("delegation", {}).get("by") == "olivia" for k in kinds)
    finally:
        store.close()
