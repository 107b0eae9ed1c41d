"""What a group rule sees on AD, pinned against a real Samba DC (docs/active-directory.md,
"Nested groups"): a member outside ``user_base`` is nobody; a nested group outside
``group_base`` counts with ``nested_groups = "in_chain"`` (the DC follows every chain) but not
with ``"client"`` (only the groups read are followed); a primary group (``primaryGroupID``,
e.g. Domain Users) is in no ``member`` list, so a rule naming it matches nobody in either mode."""

from __future__ import annotations

import secrets
from typing import Any

from provisioner.sources.ldap import LdapSource
from tests.support.samba import BASE, SambaDC, group_record, user_record


def _names(snap: Any) -> dict[str, list[str]]:
    return {i.username.split("-")[0]: sorted(g for g in i.groups if "=" not in g) for i in snap.identities}


def test_members_and_nested_groups_outside_the_bases_and_primary_groups(samba_dc: SambaDC) -> None:
    t = secrets.token_hex(3)
    ou = f"OU=s{t},{BASE}"
    people, groups, outside = f"OU=people,{ou}", f"OU=groups,{ou}", f"OU=outside,{ou}"

    def user(where: str, cn: str) -> Any:
        return user_record(where, cn, sAMAccountName=f"{cn}-{t}", userPrincipalName=f"{cn}-{t}@corp.test")

    def group(where: str, cn: str, members: list[str]) -> Any:
        dn, values = group_record(where, cn, members)
        return dn, {**values, "sAMAccountName": f"{cn}-{t}"}

    samba_dc.ldbadd(
        [(dn, {"objectClass": "organizationalUnit"}) for dn in (ou, people, groups, outside)]
        + [user(people, "ann"), user(people, "carl"), user(outside, "eve")]
        + [group(outside, "outer", [f"CN=carl,{people}"])]
        + [group(groups, "approvers", [f"CN=ann,{people}", f"CN=eve,{outside}", f"CN=outer,{outside}"])]
        + [group(groups, "staff", [])]
    )
    with samba_dc.admin() as conn:  # ann's primary group becomes staff: AD drops her from its member list
        assert conn.modify(f"CN=staff,{groups}", {"member": [("MODIFY_ADD", [f"CN=ann,{people}"])]}), conn.result
        conn.search(f"CN=staff,{groups}", "(objectClass=*)", "BASE", attributes=["primaryGroupToken"])
        token = conn.entries[0]["primaryGroupToken"].value
        assert conn.modify(f"CN=ann,{people}", {"primaryGroupID": [("MODIFY_REPLACE", [str(token)])]}), conn.result
    client = LdapSource(samba_dc.source_config(user_base=people, group_base=groups)).read()
    in_chain = LdapSource(
        samba_dc.source_config(user_base=people, group_base=groups, nested_groups="in_chain"),
        referenced_groups=["approvers", "staff"],
    ).read()
    assert _names(client) == {"ann": ["approvers"], "carl": []}
    assert _names(in_chain) == {"ann": ["approvers"], "carl": ["approvers"]}
