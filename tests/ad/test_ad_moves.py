"""Incremental reads on AD when entries move, go and come back (a real Samba DC).

``member`` is a linked attribute: when a user is moved to another OU, renamed (CN) or
deleted, the DC rewrites or drops the value in every group that lists the user, but the
group itself gets no new ``uSNChanged``.  A ``(uSNChanged>=mark)`` search therefore never
re-reads those groups, and the stored member lists keep the old DNs: the moved person
loses the group's access, and a new hire whose DN a departed person had (the same CN in
the same OU -- common where the CN is the display name) inherits the departed person's
groups.  The incremental snapshot must equal a full read."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import ldap3
import pytest

from provisioner.sources.ldap import LdapSource
from tests.support.e2e import make_setup, memberships
from tests.support.jsonstore import JsonStore, content
from tests.support.samba import BASE, UAC_NORMAL, SambaDC, group_record, user_record


def _domain(dc: SambaDC) -> tuple[str, str, str]:
    """people, people's sub-OU desk, groups: a fresh OU per test (sAMAccountName is unique
    in the whole domain: the tests give every account and group a suffix of their own)."""
    ou = f"OU=m{secrets.token_hex(4)},{BASE}"
    people, desk, groups = f"OU=people,{ou}", f"OU=desk,OU=people,{ou}", f"OU=groups,{ou}"
    dc.ldbadd([(dn, {"objectClass": "organizationalUnit"}) for dn in (ou, people, desk, groups)])
    return people, desk, groups


def _groups(snap: Any, t: str) -> dict[str, list[str]]:
    return {i.username.removesuffix(t): sorted(g for g in i.groups if "=" not in g) for i in snap.identities}


def _user(people: str, cn: str, name: str, **attrs: Any) -> Any:
    return user_record(people, cn, sAMAccountName=name, userPrincipalName=f"{name}@corp.test", **attrs)


def _group(groups: str, cn: str, t: str, members: list[str]) -> Any:
    dn, values = group_record(groups, cn, members)
    return dn, {**values, "sAMAccountName": cn + t}


def _add_user(conn: ldap3.Connection, dn: str, name: str, **attrs: str) -> None:
    values = {"sAMAccountName": name, "userAccountControl": str(UAC_NORMAL), **attrs}
    assert conn.add(dn, ["user"], values), conn.result


@pytest.mark.parametrize("scan_every", [0, 3600])
def test_moves_deletions_and_a_reused_dn_read_incrementally_equal_a_full_read(
    samba_dc: SambaDC, scan_every: int
) -> None:
    people, desk, groups = _domain(samba_dc)
    t = secrets.token_hex(3)
    samba_dc.ldbadd(
        [
            _user(people, "alice", "alice" + t, department="Trading"),
            _user(people, "bob", "bob" + t, department="Operations"),
            _user(people, "carl", "carl" + t, department="Operations"),
            _group(groups, "traders", t, [f"CN=alice,{people}"]),
            _group(groups, "approvers", t, [f"CN=bob,{people}", f"CN=carl,{people}"]),
        ]
    )
    cfg = samba_dc.source_config(user_base=people, group_base=groups, deletion_scan_every=scan_every)
    store = JsonStore()
    assert _groups(LdapSource(cfg, store=store, memory=store.memory).read(), t) == {
        "alice": ["traders"], "bob": ["approvers"], "carl": ["approvers"]
    }  # fmt: skip

    with samba_dc.admin() as conn:
        assert conn.modify_dn(f"CN=alice,{people}", "CN=alice", new_superior=desk), conn.result  # a reorganisation
        assert conn.delete(f"CN=bob,{people}"), conn.result  # bob leaves ...
        _add_user(conn, f"CN=bob,{people}", "rob" + t, department="Operations")  # ... a new Bob joins, same CN
    source = LdapSource(cfg, store=store, memory=store.memory)
    snap = source.read()
    assert source.last_stats["mode"] == "incremental"
    full = LdapSource(cfg).read()
    assert _groups(full, t) == {"alice": ["traders"], "rob": [], "carl": ["approvers"]}
    assert snap.shared_ids == {}, "a moved person counts twice"
    assert _groups(snap, t) == _groups(full, t), "stale member lists: the mover lost a group, the new hire inherited one"
    assert content(snap) == content(full)


def test_a_new_hire_with_a_departed_persons_dn_gets_none_of_their_roles(
    tmp_path: Path, samba_dc: SambaDC, role_prefix: str
) -> None:
    p, t = role_prefix, secrets.token_hex(3)
    bob, bob2 = f"bsmith{t}", f"bsmith2{t}"
    people, _, groups = _domain(samba_dc)
    samba_dc.ldbadd(
        [
            _user(people, "Bob Smith", bob, department="Operations"),
            _user(people, "Ann Lee", f"alee{t}", department="Operations"),
            _group(groups, "approvers", t, [f"CN=Bob Smith,{people}"]),
        ]
    )
    cfg = samba_dc.source_config(user_base=people, group_base=groups, name=f"{p}ad")
    setup = make_setup(tmp_path, cfg, p)
    setup.apply()
    assert f"{p}trade_approver" in memberships(p)[p + bob]

    with samba_dc.admin() as conn:
        assert conn.delete(f"CN=Bob Smith,{people}"), conn.result
    setup.apply()
    assert p + bob not in memberships(p), "the leaver kept memberships"

    with samba_dc.admin() as conn:  # another Bob Smith joins operations: AD gives him the same DN
        _add_user(conn, f"CN=Bob Smith,{people}", bob2, department="Operations")
    plan = setup.apply()
    granted = sorted(str(c.param("group")) for c in plan.changes if c.role == p + bob2 and c.param("group"))
    assert f"{p}trade_approver" not in granted, f"the new hire inherited the leaver's approver group: {granted}"
    assert f"{p}trade_approver" not in memberships(p)[p + bob2]
