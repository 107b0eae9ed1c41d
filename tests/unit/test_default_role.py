"""Default-role planning (core/reconcile/defaultrole.py) on an in-memory MariaDB-like state. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from provisioner.core.reconcile.diff import DiffPolicy
from provisioner.core.values.capabilities import MARIADB
from provisioner.core.values.model import ActualRole, ActualState
from provisioner.core.values.plan import Change, ChangeKind
from tests.unit.test_diff import empty_state, group, managed, person, plan_for

APPROVER = frozenset({"trade_approver"})


def _state(*roles: ActualRole, defaults: dict[str, str] | None = None) -> ActualState:
    base = empty_state(*roles)
    return replace(base, default_roles=defaults or {}, capabilities=MARIADB)


def _defaults(changes: Iterable[Change]) -> dict[str, object]:
    return {
        c.role: c.param("default_role")
        for c in changes
        if c.kind is ChangeKind.ALTER_ROLE and any(k == "default_role" for k, _ in c.params)
    }


def test_no_default_role_changes_without_the_target_reporting_them() -> None:
    changes, notices = plan_for([person("alice", "Other", groups=("approvers",))], empty_state())
    assert _defaults(changes) == {}
    assert not [n for n in notices if n.code == "mysql_default_role"]


def test_only_role_becomes_default_joiner_and_existing() -> None:
    joiner, _ = plan_for([person("alice", "Other", groups=("approvers",))], _state())
    assert _defaults(joiner) == {"alice": "trade_approver"}
    existing = _state(group("trade_approver"), managed("alice", "uuid-alice", member_of=APPROVER))
    changes, _ = plan_for([person("alice", "Other", groups=("approvers",))], existing)
    assert _defaults(changes) == {"alice": "trade_approver"}
    done = replace(existing, default_roles={"alice": "trade_approver"})
    assert plan_for([person("alice", "Other", groups=("approvers",))], done)[0] == ()


def test_hand_set_default_to_a_hand_granted_role_is_kept() -> None:
    state = _state(
        group("trade_approver"),
        ActualRole("dba_help", False),  # no marker: not managed
        replace(managed("alice", "uuid-alice", member_of=APPROVER), member_of=APPROVER | {"dba_help"}),
        defaults={"alice": "dba_help"},
    )
    changes, _ = plan_for([person("alice", "Other", groups=("approvers",))], state)
    assert _defaults(changes) == {}


def test_several_roles_warn_and_leaver_default_is_cleared() -> None:
    changes, notices = plan_for([person("bob", "Trading")], _state())
    assert _defaults(changes) == {}
    assert {(n.code, n.level.value, n.role) for n in notices if n.code == "mysql_default_role"} == {
        ("mysql_default_role", "warning", "bob")
    }
    leaver = _state(
        group("trade_approver"),
        managed("alice", "uuid-alice", member_of=APPROVER),
        defaults={"alice": "trade_approver"},
    )
    changes, _ = plan_for([person("alice", "Other", status="terminated", groups=("approvers",))], leaver)
    assert _defaults(changes) == {"alice": None}
    assert any(c.kind is ChangeKind.ALTER_ROLE and c.param("login") is False for c in changes)


def test_protected_user_is_left_alone() -> None:
    state = _state(group("trade_approver"), managed("alice", "uuid-alice", member_of=APPROVER))
    changes, _ = plan_for(
        [person("alice", "Other", groups=("approvers",))], state, DiffPolicy(protected=frozenset({"alice"}))
    )
    assert _defaults(changes) == {}
