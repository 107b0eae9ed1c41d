"""The AD preset against a real (Samba) domain controller: ids, account state,
expiry, nested groups (client-side and in-chain), TLS, paging past AD's page
limit and range retrieval of a 1,600-member group."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ldap3
import pytest

from provisioner.core.identity.lifecycle import LifecyclePolicy, classify
from provisioner.core.values.model import Lifecycle, SourceSnapshot
from provisioner.errors import SourceIncomplete, SourceUnavailable
from provisioner.sources.ldap import LdapSource
from tests.support.samba import (
    BASE,
    FILETIME_NEVER,
    UAC_DISABLED,
    SambaDC,
    group_record,
    user_record,
)

BIG = 1600
PAST = str(int((datetime(2020, 1, 1, tzinfo=UTC) - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds()) * 10**7)


@dataclass
class Domain:
    dc: SambaDC
    ou: str
    people: str
    groups: str

    def config(self, **overrides: Any) -> Any:
        data = {"user_base": self.people, "group_base": self.groups, **overrides}
        return self.dc.source_config(**data)


@pytest.fixture(scope="module")
def domain(samba_dc: SambaDC) -> Iterator[Domain]:
    """One OU per module: 5 named users, BIG bulk users, nested and big groups."""
    ou = f"OU=t{secrets.token_hex(4)},{BASE}"
    people, groups = f"OU=people,{ou}", f"OU=groups,{ou}"
    records: list[Any] = [(dn, {"objectClass": "organizationalUnit"}) for dn in (ou, people, groups)]
    records += [
        user_record(people, "alice", department="Trading", title="Equity Trader", accountExpires="0"),
        user_record(people, "bob", department="Ops", accountExpires=FILETIME_NEVER),
        user_record(people, "carol", department="Risk", accountExpires=PAST),
        user_record(people, "dave", userAccountControl=UAC_DISABLED),
        user_record(people, "erin", department="IT"),
    ]
    bulk = [f"CN=bulk{i:05d},{people}" for i in range(BIG)]
    records += [user_record(people, f"bulk{i:05d}") for i in range(BIG)]
    records += [
        group_record(groups, "desk", [f"CN=alice,{people}"]),
        group_record(groups, "trading", [f"CN=desk,{groups}", f"CN=bob,{people}"]),
        group_record(groups, "front office", [f"CN=trading,{groups}"]),
        group_record(groups, "big", bulk),
    ]
    samba_dc.ldbadd(records)
    yield Domain(samba_dc, ou, people, groups)


def _by_name(snap: SourceSnapshot) -> dict[str, Any]:
    return {i.username: i for i in snap.identities}


def test_preset_ids_names_and_account_state(domain: Domain) -> None:
    snap = LdapSource(domain.config()).read()
    ids = _by_name(snap)
    assert len(ids) == 5 + BIG
    conn = domain.dc.admin()
    conn.search(f"CN=alice,{domain.people}", "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
    guid = str(uuid.UUID(bytes_le=conn.response[0]["raw_attributes"]["objectGUID"][0]))
    alice = ids["alice"]
    assert alice.stable_id == guid
    assert alice.first("upn") == "alice@corp.test"
    assert alice.first("department") == "Trading"
    assert alice.enabled and alice.first("status") == "active"
    dave = ids["dave"]
    assert not dave.enabled and dave.first("status") == "inactive"


def test_account_expires_never_encodings_and_past_date(domain: Domain) -> None:
    ids = _by_name(LdapSource(domain.config()).read())
    now = datetime.now(UTC)
    policy = LifecyclePolicy()
    assert "leave_date" not in ids["alice"].attributes  # 0
    assert "leave_date" not in ids["bob"].attributes  # 9223372036854775807
    assert "leave_date" not in ids["erin"].attributes  # Samba's default for new users
    assert ids["carol"].first("leave_date") is not None
    assert classify(ids["carol"], now, policy)[0] is Lifecycle.LEAVER
    assert classify(ids["alice"], now, policy)[0] is Lifecycle.ACTIVE
    assert classify(ids["dave"], now, policy)[0] is Lifecycle.LEAVER


def test_nested_groups_client_side_and_in_chain_agree(domain: Domain) -> None:
    wanted = ["front office", "trading", "big"]
    client = _by_name(LdapSource(domain.config()).read())
    chain = _by_name(LdapSource(domain.config(nested_groups="in_chain"), referenced_groups=wanted).read())
    assert {"desk", "trading", "front office"} <= client["alice"].groups
    for name in ("alice", "bob", "bulk00042", "erin"):
        expected = {g for g in client[name].groups if g in wanted or any(g.startswith(f"cn={w},") for w in wanted)}
        assert chain[name].groups == expected, name
    assert "front office" in chain["alice"].groups and "desk" not in chain["alice"].groups
    assert chain["erin"].groups == frozenset()


@pytest.mark.parametrize("step", [None, 100, 1000])
def test_range_retrieval_yields_every_member_of_a_1600_member_group(domain: Domain, step: int | None) -> None:
    snap = LdapSource(domain.config(range_step=step, page_size=5000)).read()
    in_big = [i for i in snap.identities if "big" in i.groups]
    assert len(in_big) == BIG


class _ShortRange(LdapSource):
    """Cuts the member range short after two steps, or fails it."""

    mode = "short"

    def fetch_range(self, conn: ldap3.Connection, dn: str, spec: str) -> list[dict[str, Any]]:
        response = super().fetch_range(conn, dn, spec)
        if not spec.startswith("member;range=200-"):
            return response
        if self.mode == "error":
            conn.result = {"result": 51, "description": "busy", "message": "mid-range failure"}
            self.check(conn.result, dn)
        if self.mode == "missing":
            return [{"raw_attributes": {}}]
        item = response[0]["raw_attributes"]
        return [{"raw_attributes": {k: v[:10] for k, v in item.items()}}]


@pytest.mark.parametrize("mode", ["short", "error", "missing"])
def test_incomplete_member_range_stops_the_read(domain: Domain, mode: str) -> None:
    source = _ShortRange(domain.config(range_step=100))
    source.mode = mode
    with pytest.raises(SourceIncomplete, match="CN=big"):
        source.read()


def test_paging_reads_past_the_servers_page_limit(domain: Domain) -> None:
    # Samba (like AD) caps a page at 1,000 entries; the cookie loop continues past it.
    snap = LdapSource(domain.config(page_size=5000, group_base=None)).read()
    assert len(snap.identities) == 5 + BIG


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_with_the_domain_ca(domain: Domain, mode: str) -> None:
    cfg = domain.config(url=domain.dc.ldaps_url) if mode == "ldaps" else domain.config(start_tls=True)
    assert len(LdapSource(cfg).read().identities) == 5 + BIG


def test_tls_with_another_ca_is_unavailable(domain: Domain, tmp_path: Any) -> None:
    from tests.support.certs import make_ca_and_server

    make_ca_and_server(tmp_path)
    with pytest.raises(SourceUnavailable):
        LdapSource(domain.config(url=domain.dc.ldaps_url, ca_file=str(tmp_path / "other-ca.pem"))).read()
