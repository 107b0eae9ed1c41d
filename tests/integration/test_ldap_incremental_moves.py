"""Incremental LDAP reads when an entry moves inside the user base (a new OU, a new RDN):
the directory holds one entry with the person's stable id, so the incremental snapshot
must too -- also between deletion scans (``deletion_scan_every``), when the entry's old
DN is still in the stored snapshot."""

from __future__ import annotations

from pathlib import Path

from provisioner.sources.ldap import LdapSource
from tests.support.e2e import make_setup, memberships, person, role_options
from tests.support.fixtures import LdapOu
from tests.support.jsonstore import JsonStore, content


def _move(ldap_ou: LdapOu, dn: str, rdn: str, superior: str) -> None:
    with ldap_ou.server.admin() as conn:
        assert conn.modify_dn(dn, rdn, new_superior=superior), conn.result


def test_a_move_inside_the_user_base_is_one_identity_between_deletion_scans(ldap_ou: LdapOu) -> None:
    desk = f"ou=desk,{ldap_ou.people}"
    ldap_ou.add([(desk, {"objectClass": "organizationalUnit", "ou": "desk"})])
    alice = ldap_ou.add_user("alice", departmentNumber="Trading")
    ldap_ou.add_user("bob", departmentNumber="Ops")
    store, cfg = JsonStore(), ldap_ou.config(deletion_scan_every="1h")
    LdapSource(cfg, store=store, memory=store.memory).read()
    _move(ldap_ou, alice, "uid=alice", desk)
    source = LdapSource(cfg, store=store, memory=store.memory)
    snap = source.read()
    assert source.last_stats["deletion_scan"] is False
    assert snap.shared_ids == {}, "a moved entry counts twice: its old DN is still in the stored snapshot"
    assert content(snap) == content(LdapSource(cfg).read())


def test_a_person_moved_to_another_ou_keeps_login_and_access(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    desk = f"ou=desk,{ldap_ou.people}"
    ldap_ou.add([(desk, {"objectClass": "organizationalUnit", "ou": "desk"})])
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("bob", **person("Operations", "Settlements Analyst"))
    setup = make_setup(tmp_path, ldap_ou.config(deletion_scan_every="1h"), p)
    setup.apply()
    before = memberships(p)[f"{p}alice"]
    assert before == {f"{p}trade_executor", f"{p}trade_reader"}

    _move(ldap_ou, alice, "uid=alice", desk)  # the desk reorganised into its own OU
    plan = setup.apply()
    alice_changes = [c.describe() for c in plan.changes if c.role == f"{p}alice"]
    assert alice_changes == [], alice_changes
    assert role_options(f"{p}alice") == (True, None), "a person moved between OUs was disabled as a leaver"
    assert memberships(p)[f"{p}alice"] == before


def test_a_group_moved_inside_the_group_base_is_one_group_between_deletion_scans(ldap_ou: LdapOu) -> None:
    desk = f"ou=desk,{ldap_ou.groups}"
    ldap_ou.add([(desk, {"objectClass": "organizationalUnit", "ou": "desk"})])
    alice = ldap_ou.add_user("alice", departmentNumber="Trading")
    approvers = ldap_ou.add_group("approvers", [alice])
    store, cfg = JsonStore(), ldap_ou.config(deletion_scan_every="1h")
    LdapSource(cfg, store=store, memory=store.memory).read()
    _move(ldap_ou, approvers, "cn=approvers", desk)
    snap = LdapSource(cfg, store=store, memory=store.memory).read()
    assert dict(snap.ambiguous_groups) == {}, "a moved group is two groups of one name: rules naming it match nobody"
    assert content(snap) == content(LdapSource(cfg).read())


def test_a_reorganisation_moving_many_people_runs_the_deletion_scan_instead(ldap_ou: LdapOu) -> None:
    desk = f"ou=desk,{ldap_ou.people}"
    ldap_ou.add([(desk, {"objectClass": "organizationalUnit", "ou": "desk"})])
    dns = [ldap_ou.add_user(f"u{i:03d}", departmentNumber="Trading") for i in range(60)]
    store, cfg = JsonStore(), ldap_ou.config(deletion_scan_every="1h")
    LdapSource(cfg, store=store, memory=store.memory).read()
    for i, dn in enumerate(dns):
        _move(ldap_ou, dn, f"uid=u{i:03d}", desk)
    source = LdapSource(cfg, store=store, memory=store.memory)
    snap = source.read()
    assert source.last_stats["deletion_scan"] is True, "60 moved people: one scan, not 60 base searches"
    assert snap.shared_ids == {} and source.last_stats["users_gone"] == 60
    assert content(snap) == content(LdapSource(cfg).read())
