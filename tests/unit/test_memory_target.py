"""The in-memory target (provisioner/targets/memory.py): the Target contract's semantics per
capability, and its fault injection between statements.  Pure; tests/conformance checks the
same sequences against PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from provisioner.config import load_config
from provisioner.core.values.capabilities import MARIADB, POSTGRESQL, Capabilities
from provisioner.core.values.model import Marker, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, make_change
from provisioner.daemon.ha import Leadership
from provisioner.targets.base import ChangeFailed
from provisioner.targets.factory import build_target
from provisioner.targets.memory import MemoryTarget


def user_marker(sid: str, granted: Sequence[str] = ()) -> dict[str, object]:
    return Marker(RoleKind.USER, sid, "ldap", "inst", frozenset(granted)).to_json()


def joiner(name: str = "alice", group: str = "desk") -> list[Change]:
    return [
        make_change(ChangeKind.CREATE_ROLE, group, [], role_kind="group", login=False, valid_until=None,
                    marker=Marker(RoleKind.GROUP, None, None, "inst").to_json()),
        make_change(ChangeKind.CREATE_ROLE, name, [], role_kind="user", login=True, valid_until=None,
                    marker=user_marker(f"id-{name}")),
        make_change(ChangeKind.GRANT_MEMBERSHIP, name, [], group=group, marker=user_marker(f"id-{name}", [group])),
    ]


BOTH = pytest.mark.parametrize("caps", [POSTGRESQL, MARIADB], ids=["transactional", "autocommit"])


@BOTH
def test_a_joiner_applies_and_reads_back(caps: Capabilities) -> None:
    target = MemoryTarget(capabilities=caps)
    seen: list[Change] = []
    result = target.apply(joiner(), on_change=seen.append)
    assert result.failed == () and seen == joiner()
    alice = target.inspect().roles["alice"]
    assert alice.login and alice.member_of == {"desk"}
    assert alice.marker is not None and alice.marker.granted == {"desk"}
    assert target.inspect().capabilities is caps


@BOTH
def test_a_refused_change_is_isolated_and_a_refused_create_skips_the_role(caps: Capabilities) -> None:
    target = MemoryTarget(capabilities=caps)
    target.create_role("alice", login=True)  # a namesake made by hand since the plan
    result = target.apply(joiner())
    assert [c.role for c in result.applied] == ["desk"]
    assert [(f.change.kind, f.change.role) for f in result.failed] == [
        (ChangeKind.CREATE_ROLE, "alice"),
        (ChangeKind.GRANT_MEMBERSHIP, "alice"),
    ]
    assert "skipped" in result.failed[1].error
    alice = target.inspect().roles["alice"]
    assert alice.marker is None and alice.member_of == frozenset()  # the namesake untouched


def test_transactional_crash_rolls_everything_back() -> None:
    target = MemoryTarget(capabilities=POSTGRESQL)
    before = target.inspect()
    began: list[str | None] = []
    target.crash_after(3)
    with pytest.raises(ChangeFailed) as info:
        target.apply(joiner(), on_begin=began.append)
    assert info.value.applied == 0 and info.value.change is None
    assert target.inspect() == before
    assert began == ["1"] and target.committed("1") is False
    target.apply(joiner(), on_begin=began.append)
    assert target.committed("2") is True


def test_autocommit_crash_leaves_the_safe_prefix() -> None:
    """MariaDB's order: marker row, then CREATE; ledger row before GRANT.  A crash between
    the ledger row and the GRANT leaves an entry without its membership."""
    target = MemoryTarget(capabilities=MARIADB)
    target.crash_after(5)  # group: row + CREATE; alice: row + CREATE; ledger row; -- GRANT lost
    with pytest.raises(ChangeFailed) as info:
        target.apply(joiner(), on_begin=lambda t: None)
    assert info.value.applied == 2 and info.value.change == joiner()[2]
    alice = target.inspect().roles["alice"]
    assert alice.member_of == frozenset() and alice.marker is not None and alice.marker.granted == {"desk"}
    assert target.committed("1") is None


def test_autocommit_orphan_marker_rows_are_removed_by_the_next_apply() -> None:
    target = MemoryTarget(capabilities=MARIADB)
    target.crash_after(1)  # the group's marker row, not its CREATE
    with pytest.raises(ChangeFailed):
        target.apply(joiner()[:1])
    assert "desk" not in target.inspect().roles
    target.apply(joiner())
    assert target.inspect().roles["desk"].marker is not None
    assert "desk" in target.inspect().roles["provisioner"].member_of  # MariaDB: the creator holds it


@BOTH
def test_injected_refusal_strikes_at_the_account_statement(caps: Capabilities) -> None:
    target = MemoryTarget(capabilities=caps)
    target.apply(joiner()[:2])
    target.refuse(lambda c: "no" if c.kind is ChangeKind.GRANT_MEMBERSHIP else None)
    result = target.apply(joiner()[2:])
    assert [f.error for f in result.failed] == ["no"]
    alice = target.inspect().roles["alice"]
    assert alice.member_of == frozenset()
    assert alice.marker is not None
    # the ledger entry without its membership: written first on MariaDB, rolled back on PostgreSQL
    assert alice.marker.granted == (frozenset() if caps.transactional else {"desk"})


@BOTH
def test_sessions_end_whatever_becomes_of_the_transaction(caps: Capabilities) -> None:
    target = MemoryTarget(capabilities=caps)
    target.apply(joiner())
    target.open_sessions("alice", 2)
    assert target.inspect().sessions == {"alice": 2}
    leave = [
        make_change(ChangeKind.ALTER_ROLE, "alice", [], login=False),
        make_change(ChangeKind.TERMINATE_SESSIONS, "alice", []),
    ]
    target.crash_after(2)
    with pytest.raises(ChangeFailed):
        target.apply([*leave, make_change(ChangeKind.SET_MARKER, "alice", [], marker=user_marker("id-alice"))])
    assert target.inspect().sessions == {}  # pg_terminate_backend / KILL are not transactional
    assert target.inspect().roles["alice"].login is (caps.transactional)


@BOTH
def test_rename_moves_marker_memberships_and_members(caps: Capabilities) -> None:
    target = MemoryTarget(capabilities=caps)
    target.apply(joiner())
    target.apply([make_change(ChangeKind.RENAME_ROLE, "alicia", [], old_name="alice")])
    roles = target.inspect().roles
    assert "alice" not in roles and roles["alicia"].member_of == {"desk"}
    assert roles["alicia"].marker is not None and roles["alicia"].marker.stable_id == "id-alice"


def test_revoke_of_a_membership_not_held_follows_the_server() -> None:
    """PostgreSQL warns; MariaDB refuses (error 1962)."""
    revoke = make_change(ChangeKind.REVOKE_MEMBERSHIP, "alice", [], group="desk")
    for caps, refused in ((POSTGRESQL, False), (MARIADB, True)):
        target = MemoryTarget(capabilities=caps)
        target.apply(joiner()[:2])
        assert bool(target.apply([revoke]).failed) is refused


def test_password_drift_is_read_where_declared() -> None:
    for caps in (POSTGRESQL, MARIADB):
        target = MemoryTarget(capabilities=caps)
        target.apply(joiner())
        target.set_password("alice")
        assert target.inspect().credential_drift == ({"alice"} if caps.password_drift else frozenset())


def test_privilege_changes_are_refused_alone() -> None:
    target = MemoryTarget()
    result = target.apply([make_change(ChangeKind.GRANT_PRIVILEGE, "desk", [], privilege="SELECT"), *joiner()])
    assert len(result.failed) == 1 and len(result.applied) == 3


def test_a_memory_target_from_the_configuration(tmp_path: Path) -> None:
    """``type = "memory"``: built by the factory with its flavour's capabilities, and led
    by the process it lives in (the daemon's leader lock needs no server)."""
    (tmp_path / "people.ldif").write_text("")
    (tmp_path / "config.toml").write_text(
        '[provisioner]\nmappings = "m"\n\n[[sources]]\nname = "ldif"\ntype = "ldif"\npath = "people.ldif"\n\n'
        '[[targets]]\nname = "scratch"\ntype = "memory"\nflavor = "mariadb"\nsession_role = "svc"\n'
    )
    cfg = load_config(tmp_path / "config.toml")
    target = build_target(cfg.targets[0])
    assert isinstance(target, MemoryTarget) and target.capabilities is MARIADB
    assert target.inspect().session_role == "svc"
    leadership = Leadership(cfg)
    try:
        assert leadership.leads("scratch") and leadership.status() == {"scratch": True}
    finally:
        leadership.release_all()
