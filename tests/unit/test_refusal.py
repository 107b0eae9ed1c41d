"""Plan-time refusal of changes on superusers (core/reconcile/refusal.py): a superuser
MEMBER's memberships are administered through the group and stay in the plan
(issue 16: a superuser leaver loses what provisioner can take), without the
ledger COMMENT a non-superuser may not write on a superuser."""

from __future__ import annotations

from provisioner.core.reconcile.refusal import refuse_unworkable
from provisioner.core.values.model import ActualRole, ActualState, DesiredState, Reason
from provisioner.core.values.plan import ChangeKind, make_change

WHY = [Reason("lifecycle:leaver", "terminated")]
MARKER = {"v": 1, "kind": "user", "granted": []}


def _state(session_superuser: bool = False) -> ActualState:
    roles = {
        "svc": ActualRole("svc", login=True, superuser=session_superuser, createrole=True),
        "root_ann": ActualRole("root_ann", login=True, superuser=True, member_of=frozenset({"desk"})),
        "desk": ActualRole("desk", login=False),
        "admins": ActualRole("admins", login=False, superuser=True),
    }
    return ActualState(target="pg", roles=roles, session_role="svc")


def _desired() -> DesiredState:
    return DesiredState(users={}, groups=frozenset(), sources=frozenset())


def test_a_superuser_members_revoke_stays_without_its_ledger_comment() -> None:
    revoke = make_change(ChangeKind.REVOKE_MEMBERSHIP, "root_ann", WHY, group="desk", marker=MARKER)
    disable = make_change(ChangeKind.ALTER_ROLE, "root_ann", WHY, login=False)
    into_su = make_change(ChangeKind.GRANT_MEMBERSHIP, "root_ann", WHY, group="admins", marker=MARKER)
    kept, notices = refuse_unworkable([revoke, disable, into_su], _desired(), _state())
    assert [(c.kind, c.param("group")) for c in kept] == [(ChangeKind.REVOKE_MEMBERSHIP, "desk")]
    assert kept[0].param("marker") is None and kept[0].describe() == revoke.describe()
    assert sorted(n.code for n in notices) == ["not_permitted", "not_permitted"]
    assert any("alter role" in n.message.lower() or "login" in n.message.lower() for n in notices)
    assert any("'admins' is a superuser role" in n.message for n in notices)


def test_a_superuser_session_keeps_everything_with_the_ledger() -> None:
    revoke = make_change(ChangeKind.REVOKE_MEMBERSHIP, "root_ann", WHY, group="desk", marker=MARKER)
    disable = make_change(ChangeKind.ALTER_ROLE, "root_ann", WHY, login=False)
    kept, notices = refuse_unworkable([revoke, disable], _desired(), _state(session_superuser=True))
    assert kept == (revoke, disable) and notices == ()
