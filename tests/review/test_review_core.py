"""Pure review model: ids, signatures, reviewer assignment, row validation, revocations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from provisioner.core.governance.review import (
    ItemState,
    Person,
    assign,
    build_items,
    campaign_for,
    coverage,
    derive_key,
    revocations,
    validate_rows,
)
from provisioner.core.privileges.catalog import Catalog, CatalogRole, Sensitivity
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

KEY = derive_key(b"s" * 32, "2026-Q4")
CATALOG = Catalog({"approver": CatalogRole("approver", "Approve <trades>", "cco", Sensitivity.CRITICAL, "c.toml", {})})


def world() -> tuple[dict[str, ActualState], DesiredState]:
    why = Reason("lifecycle", "active")
    alice = DesiredUser("alice", "id-a", "alice", "src", Lifecycle.ACTIVE, why, None,
                        {"executor": (Reason("desk-traders", "x", (("department", "Trading"),)),)})
    desired = DesiredState({"alice": alice}, frozenset({"executor"}), frozenset({"src"}))
    roles = {
        "alice": ActualRole("alice", True, marker=Marker(RoleKind.USER, "id-a", "src"),
                            member_of=frozenset({"executor", "approver"})),
        "other": ActualRole("other", True, marker=Marker(RoleKind.USER, "id-o", "elsewhere"),
                            member_of=frozenset({"approver"})),
        "handmade": ActualRole("handmade", True, member_of=frozenset({"approver", "unrelated"})),
        "svc": ActualRole("svc", True, member_of=frozenset({"approver"})),
    }
    return {"pg": ActualState("pg", roles, "svc")}, desired


def items():
    actual, desired = world()
    people = {"alice": Person("alice", "id-a", "carol")}
    flags = {("pg", "alice", "approver"): ["approve-execute"]}
    when = {("pg", "alice", "executor"): "2026-10-01T09:00:00+00:00"}
    return build_items("2026-Q4", actual, desired, people, CATALOG, flags, when, "manager", KEY)


def test_campaign_ids() -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    assert (campaign_for(now), campaign_for(now, "monthly"), campaign_for(now, "yearly")) == ("2026-Q4", "2026-11", "2026")


def test_snapshot_scope_provenance_and_reviewers() -> None:
    got = {(i.role, i.access): i for i in items()}
    assert set(got) == {("alice", "approver"), ("alice", "executor"), ("handmade", "approver")}
    ex = got[("alice", "executor")]
    assert (ex.provenance, ex.rules, ex.attributes, ex.reviewer) == ("rule", ("desk-traders",), (("department", "Trading"),), "carol")
    assert ex.granted_at.startswith("2026-10-01")
    ap = got[("alice", "approver")]
    assert (ap.provenance, ap.sod, ap.sensitivity, ap.granted_at) == ("out-of-band", ("approve-execute",), "critical", "not granted by provisioner (date unknown)")
    assert got[("handmade", "approver")].reviewer == "cco", "no manager known: the role owner"
    assert assign("owner", Person("alice", "id-a", "carol"), "approver", CATALOG) == "cco"
    assert assign("owner", Person("alice", "id-a", "carol"), "nocatalog", CATALOG) == "carol"
    assert assign("manager", None, "nocatalog", CATALOG) == "unassigned"


def rows_for(its, **changes):
    return [(i + 2, {**it.row(), **changes.get(it.item_id, {})}) for i, it in enumerate(its)]


def test_validation_is_all_or_nothing_and_names_lines() -> None:
    its = [i for i in items() if i.reviewer == "carol"]
    by = {i.item_id: i for i in items()}
    good = rows_for(its, **{its[0].item_id: {"decision": "Revoke", "comment": "not needed"}})
    decisions, problems = validate_rows(good, by, KEY, "2026-Q4")
    assert problems == [] and [(d.decision, d.line) for d in decisions] == [("revoke", 2)]

    forged = rows_for(its, **{its[1].item_id: {"identity": "mallory"}})
    _, problems = validate_rows(forged, by, KEY, "2026-Q4")
    assert problems == [f"line 3: item {its[1].item_id}: tampered row: column(s) changed from the export (identity 'alice' -> 'mallory')"]

    resigned = rows_for(its, **{its[0].item_id: {"signature": "0" * 64}})
    assert "signature does not match" in validate_rows(resigned, by, KEY, "2026-Q4")[1][0]
    other_key = derive_key(b"t" * 32, "2026-Q4")
    assert validate_rows(good, by, other_key, "2026-Q4")[1]

    bad = rows_for(its, **{its[0].item_id: {"decision": "revoke", "comment": ""}})
    assert "needs a comment" in validate_rows(bad, by, KEY, "2026-Q4")[1][0]
    twice = [*good, (9, good[0][1])]
    assert "appears twice (first at line 2)" in validate_rows(twice, by, KEY, "2026-Q4")[1][0]
    assert "assigned to 'carol', not to 'cco'" in validate_rows(good, by, KEY, "2026-Q4", reviewer="cco")[1][0]


def test_revocations_flag_rule_grants_and_skip_gone() -> None:
    actual, desired = world()
    its = {(i.role, i.access): i for i in items()}
    states = [
        ItemState(its[("alice", "approver")], "revoke", "oob", "carol"),
        ItemState(its[("alice", "executor")], "revoke", "moved", "carol"),
        ItemState(its[("handmade", "approver")], "keep", "", "cco"),
    ]
    rev = revocations(states, desired, actual)
    (change,) = rev.changes["pg"]
    assert (change.kind.value, change.role, change.param("group")) == ("revoke_membership", "alice", "approver")
    assert change.reasons[0].describe() == "review:2026-Q4: access review 2026-Q4, reviewer carol: oob"
    assert "desk-traders" in rev.flagged[its[("alice", "executor")].item_id]
    done = [replace(states[0], outcome="revoked")]
    assert revocations(done, desired, actual).changes == {}
    gone = {"pg": replace(actual["pg"], roles={**actual["pg"].roles, "alice": replace(actual["pg"].roles["alice"], member_of=frozenset())})}
    assert revocations(states[:1], desired, gone).gone == (its[("alice", "approver")].item_id,)
    cov = {r["reviewer"]: r for r in coverage(states)}
    assert (cov["carol"]["revoke"], cov["cco"]["keep"], cov["cco"]["open"]) == (2, 1, 0)


def test_other_installations_roles_and_reused_names_are_not_this_campaigns() -> None:
    """Two installations share a server and a source name; a leaver's role name is reused."""
    why = Reason("lifecycle", "active")
    sam = DesiredUser("sam", "id-new", "sam", "src", Lifecycle.ACTIVE, why, None, {})
    desired = DesiredState({"sam": sam}, frozenset({"executor"}), frozenset({"src"}))
    roles = {
        "sam": ActualRole("sam", False, marker=Marker(RoleKind.USER, "id-old", "src", "trading"),
                          member_of=frozenset({"executor"})),
        "kim": ActualRole("kim", True, marker=Marker(RoleKind.USER, "id-k", "src", "risk"),
                          member_of=frozenset({"executor"})),
    }
    people = {"sam": Person("sam", "id-new", "carol")}
    got = build_items("2026-Q4", {"pg": ActualState("pg", roles, "svc")}, desired, people, CATALOG, {}, {},
                      "manager", KEY, "trading")
    assert [(i.role, i.identity, i.stable_id, i.reviewer) for i in got] == [("sam", "sam", "", "unassigned")]
