"""Incremental reads on AD: uSNChanged against the same domain controller; a
changed DC (dsServiceName / invocationId) means a full read; the incremental
snapshot equals a fresh full read."""

from __future__ import annotations

import json
import secrets
from typing import Any

from provisioner.sources.ldap import LdapSource
from tests.support.jsonstore import JsonStore, content
from tests.support.samba import BASE, UAC_DISABLED, SambaDC, group_record, user_record


def _setup(dc: SambaDC) -> tuple[str, str, Any]:
    ou = f"OU=i{secrets.token_hex(4)},{BASE}"
    people, groups = f"OU=people,{ou}", f"OU=groups,{ou}"
    records: list[Any] = [(dn, {"objectClass": "organizationalUnit"}) for dn in (ou, people, groups)]
    records += [user_record(people, f"inc{i}", department=f"d{i}") for i in range(6)]
    records += [group_record(groups, "g1", [f"CN=inc0,{people}", f"CN=inc1,{people}"])]
    dc.ldbadd(records)
    return people, groups, dc.source_config(user_base=people, group_base=groups)


def _read(cfg: Any, store: JsonStore) -> tuple[Any, dict[str, Any]]:
    source = LdapSource(cfg, store=store, memory=getattr(store, "memory", None))
    return source.read(), source.last_stats


def test_usn_changed_incremental_equals_full(samba_dc: SambaDC) -> None:
    people, groups, cfg = _setup(samba_dc)
    store = JsonStore()
    assert _read(cfg, store)[1]["mode"] == "full"
    snap, stats = _read(cfg, store)
    assert stats["mode"] == "incremental" and stats["users_changed"] == 0 and stats["groups_changed"] == 0
    assert stats["quiet"] is True and stats["deletion_scan"] is False  # highestCommittedUSN did not move

    conn = samba_dc.admin()
    conn.modify(f"CN=inc2,{people}", {"department": [("MODIFY_REPLACE", ["Trading"])]})
    conn.modify(f"CN=inc3,{people}", {"userAccountControl": [("MODIFY_REPLACE", [str(UAC_DISABLED)])]})
    conn.modify(f"CN=g1,{groups}", {"member": [("MODIFY_ADD", [f"CN=inc4,{people}"])]})
    conn.delete(f"CN=inc5,{people}")
    conn.add(f"CN=inc6,{people}", ["user"], {"sAMAccountName": "inc6", "userAccountControl": "512"})
    snap, stats = _read(cfg, store)
    assert stats["mode"] == "incremental" and stats["quiet"] is False and stats["deletion_scan"] is True
    assert stats["users_changed"] == 3 and stats["groups_changed"] == 1 and stats["users_gone"] == 1
    assert content(snap) == content(LdapSource(cfg).read())
    names = {i.username: i for i in snap.identities}
    assert "inc5" not in names and "inc6" in names
    assert names["inc2"].first("department") == "Trading"
    assert not names["inc3"].enabled
    assert "g1" in names["inc4"].groups


def test_another_domain_controller_means_a_full_read(samba_dc: SambaDC) -> None:
    _, _, cfg = _setup(samba_dc)
    store = JsonStore()
    _read(cfg, store)
    for key, raw in store.data.items():
        value = json.loads(raw)
        if "mark" in value:
            value["mark"]["invocation"] = "00" * 16
            store.data[key] = json.dumps(value)
    assert _read(cfg, store)[1]["reason"] == "domain controller changed"
    assert _read(cfg, store)[1]["mode"] == "incremental"
