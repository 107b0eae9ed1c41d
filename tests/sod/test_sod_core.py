"""Pure SoD: policy files, exceptions, detection and prevention on in-memory states."""

from __future__ import annotations

from datetime import UTC, date, datetime

from provisioner.core.governance.sod import build_exceptions, build_policies
from provisioner.core.governance.sodeval import PrivFact, RolesOnly, detect, enforce_sod
from provisioner.core.values.model import (
    ActualRole,
    ActualState,
    DesiredState,
    DesiredUser,
    Lifecycle,
    Marker,
    Reason,
    RoleKind,
)
from provisioner.core.values.plan import ChangeKind, NoticeLevel, Plan, TargetPlan, make_change

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICIES = """
[[policy]]
id = "approve-execute"
description = "no approving own trades"
severity = "critical"
conflicts = [ { role = "approver" }, { role = "executor" } ]

[[policy]]
id = "orders-approvals"
description = "order entry vs approval records"
conflicts = [ { privilege = "insert", on = "trading.orders" }, { privilege = "UPDATE", on = "trading.approvals" } ]
"""


def policies():
    pols, problems = build_policies([("sod.toml", POLICIES)])
    assert problems == []
    return pols


def user(name: str, *groups: str, rules: dict[str, str] | None = None) -> DesiredUser:
    why = Reason("lifecycle:active", "active")
    return DesiredUser(name, f"id-{name}", name, "src", Lifecycle.ACTIVE, why, None,
                       {g: (Reason((rules or {}).get(g, "r1"), f"title='{g}'"),) for g in groups})


def state(*roles: ActualRole) -> ActualState:
    groups = [ActualRole(g, False, marker=Marker(RoleKind.GROUP)) for g in ("approver", "executor", "reader")]
    return ActualState("pg", {r.name: r for r in [*groups, *roles]}, "svc")


def login(name: str, *member_of: str) -> ActualRole:
    return ActualRole(name, True, marker=Marker(RoleKind.USER, f"id-{name}", "src"), member_of=frozenset(member_of))


def grant(role: str, group: str, rule: str = "r1"):
    return make_change(ChangeKind.GRANT_MEMBERSHIP, role, [Reason(rule, "x")], group=group)


def plan_of(*changes) -> Plan:
    return Plan(NOW, "cfg", (TargetPlan("pg", "fp", tuple(changes)),))


def desired(*users: DesiredUser) -> DesiredState:
    return DesiredState({u.name: u for u in users}, frozenset(), frozenset({"src"}))


def test_policy_file_errors_all_at_once_with_lines() -> None:
    text = """
[[policy]]
id = "ok"
description = "fine"
conflicts = [ { role = "a" }, { role = "b" } ]

[[policy]]
id = "bad one"
severity = "extreme"
conflicts = [ { role = "a" }, { privilege = "FLY", on = "x" }, { on = "nodot", privilege = "INSERT" } ]
extra = 1
"""
    pols, problems = build_policies([("f.toml", text)])
    assert [p.id for p in pols] == ["ok"]
    assert pols[0].line == 2
    joined = "\n".join(problems)
    assert "f.toml:7: policy 'bad one'" in joined
    for needle in ("'id' 'bad one' may hold only letters", "'description' is required", "extreme", "FLY", "'on' must name a table", "unknown key"):
        assert needle in joined


def test_exception_requires_known_policy_and_date() -> None:
    text = '[[exception]]\nidentity = "alice"\npolicy = "nope"\napprover = "CCO"\nreason = "r"\nexpires = "soon"\n'
    excs, problems = build_exceptions([("e.toml", text)], policies())
    assert excs == ()
    assert any("e.toml:1: exception: policy 'nope'" in p for p in problems)
    assert any("'expires' must be a date such as 2027-03-31, not the text 'soon'" in p for p in problems)


def test_new_grant_withheld_rest_goes_ahead() -> None:
    st = state(login("alice", "executor"))
    d = desired(user("alice", "executor", "approver", "reader", rules={"approver": "approvers"}))
    plan = plan_of(grant("alice", "approver", "approvers"), grant("alice", "reader"))
    out, violations = enforce_sod(plan, d, {"pg": st}, policies(), (), RolesOnly(), NOW)
    groups = [c.param("group") for c in out.changes]
    assert groups == ["reader"]
    (v,) = violations
    assert v.withheld == ("approver",) and v.policy.id == "approve-execute"
    notice = next(n for n in out.targets[0].notices if n.code == "sod_violation")
    assert notice.level is NoticeLevel.ERROR and "approvers" in notice.message and "alice" in notice.message


def test_swap_in_one_plan_is_not_a_conflict() -> None:
    st = state(login("bob", "executor"))
    revoke = make_change(ChangeKind.REVOKE_MEMBERSHIP, "bob", [Reason("lifecycle:mover", "x")], group="executor")
    plan = plan_of(revoke, grant("bob", "approver"))
    out, violations = enforce_sod(plan, desired(user("bob", "approver")), {"pg": st}, policies(), (), RolesOnly(), NOW)
    assert violations == () and len(out.changes) == 2


def test_joiner_with_both_sides_gets_neither() -> None:
    plan = plan_of(grant("carl", "approver"), grant("carl", "executor"), grant("carl", "reader"))
    d = desired(user("carl", "approver", "executor", "reader"))
    out, violations = enforce_sod(plan, d, {"pg": state()}, policies(), (), RolesOnly(), NOW)
    assert [c.param("group") for c in out.changes] == ["reader"]
    assert violations[0].withheld == ("approver", "executor")


def test_exception_active_then_expired() -> None:
    text = ('[[exception]]\nidentity = "id-alice"\npolicy = "approve-execute"\napprover = "CCO"\n'
            'reason = "sole desk head"\nexpires = 2026-11-30\n')
    excs, problems = build_exceptions([("e.toml", text)], policies())
    assert problems == []
    st = state(login("alice", "executor"))
    d = desired(user("alice", "executor", "approver"))
    plan = plan_of(grant("alice", "approver"))
    out, violations = enforce_sod(plan, d, {"pg": st}, policies(), excs, RolesOnly(), NOW)
    assert violations == () and len(out.changes) == 1
    later = datetime(2026, 12, 1, tzinfo=UTC)
    out, violations = enforce_sod(plan, d, {"pg": st}, policies(), excs, RolesOnly(), later)
    assert out.changes == () and "EXPIRED on 2026-11-30" in violations[0].describe()
    assert excs[0].expires == date(2026, 11, 30)


class Model:
    """catalog: senior_trader inherits executor; desk_admin grants UPDATE on approvals."""

    def parents(self, role: str) -> tuple[str, ...]:
        return ("executor",) if role == "senior_trader" else ()

    def privileges(self, role: str) -> tuple[PrivFact, ...]:
        if role == "executor":
            return (PrivFact("INSERT", "trading", "orders", "executor grants INSERT on trading.orders"),)
        if role == "desk_admin":
            return (PrivFact("UPDATE", "trading", "*", "desk_admin grants UPDATE on all tables"),)
        return ()


def test_detect_inherited_roles_privileges_and_out_of_band() -> None:
    groups = [ActualRole(g, False, marker=Marker(RoleKind.GROUP)) for g in ("senior_trader", "desk_admin")]
    st = state(login("dora", "senior_trader", "approver", "desk_admin"), *groups)
    found = detect(desired(user("dora", "senior_trader")), st, policies(), (), Model(), NOW)
    by = {c.policy.id: c for c in found}
    roles = by["approve-execute"]
    held = {h.side.describe(): h for h in roles.holdings}
    assert held["role executor"].path == ("senior_trader", "executor")
    assert held["role executor"].cause.startswith("rule r1")
    assert held["role approver"].cause.startswith("out-of-band")
    privs = by["orders-approvals"]
    assert {h.side.describe() for h in privs.holdings} == {"INSERT on trading.orders", "UPDATE on trading.approvals"}
