"""core/identity/exclusions.py: which memberships an exclusion withholds (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioner.core.identity.exclusions import Exclusion, apply_exclusions, basis, basis_of, digest
from provisioner.core.values.model import DesiredState, DesiredUser, Lifecycle, Reason

NOW = datetime(2026, 11, 2, tzinfo=UTC)
DESK = Reason("desk", "traders", (("department", "Trading"), ("title", "Trader")))


def user(name: str, sid: str, reasons: tuple[Reason, ...] = (DESK,)) -> DesiredUser:
    return DesiredUser(name, sid, name, "src", Lifecycle.ACTIVE, Reason("lifecycle", "active"), None,
                       {"trade_executor": reasons, "trade_reader": reasons})


def excl(sid: str = "id-a", until: datetime = NOW + timedelta(days=1), b: tuple[str, ...] | None = None) -> Exclusion:
    return Exclusion(sid, "trade_executor", until, basis_of((DESK,)) if b is None else b, "2026-Q4", "i-1",
                     "carol", "moved", NOW.isoformat())


def state(*users: DesiredUser) -> DesiredState:
    return DesiredState({u.name: u for u in users}, frozenset({"trade_executor", "trade_reader"}), frozenset({"src"}))


def test_withholds_only_the_excluded_membership_of_that_person() -> None:
    a, b = user("alice", "id-a"), user("bob", "id-b")
    out = apply_exclusions(state(a, b), [excl()], NOW)
    assert set(out.users["alice"].memberships) == {"trade_reader"}
    assert out.users["alice"].excluded["trade_executor"].rule == "review-exclusion:2026-Q4"
    assert "carol" in out.users["alice"].excluded["trade_executor"].text
    assert out.users["bob"] is b, "untouched people stay the same object (diff memo)"


def test_expired_or_changed_basis_lapses() -> None:
    desired = state(user("alice", "id-a"))
    assert apply_exclusions(desired, [excl(until=NOW)], NOW) is desired
    moved = state(user("alice", "id-a", (Reason("desk", "traders", (("department", "Research"),)),)))
    assert apply_exclusions(moved, [excl()], NOW) is moved
    assert basis(["desk"], [("title", "Trader"), ("department", "Trading")]) == basis_of((DESK,))


def test_digest_changes_with_the_exclusions_in_force() -> None:
    assert digest([excl()]) != digest([]) and digest([excl()]) == digest([excl()])
    assert digest([excl()]) != digest([excl(until=NOW + timedelta(days=2))])
