"""Attribute presets, AD decoding and group resolution, without a server."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.config import LdapSourceConfig
from provisioner.sources.attributes import (
    attribute_map,
    decode_guid,
    filetime_to_iso,
    map_entry,
    normalize_date,
    requested_attributes,
)
from provisioner.sources.groups import (
    GroupGraph,
    GroupRecord,
    build_snapshot,
    group_record,
    norm_dn,
)


def _cfg(**kw: object) -> LdapSourceConfig:
    data = {"type": "ldap", "name": "s", "url": "ldap://x", "user_base": "dc=x", **kw}
    return LdapSourceConfig.model_validate(data)


def _filetime(moment: datetime) -> int:
    delta = moment - datetime(1601, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# --------------------------------------------------------------------------- presets


def test_openldap_requested_attributes_are_minimal() -> None:
    attrs = requested_attributes(attribute_map(_cfg()))
    assert attrs[:2] == ["entryUUID", "uid"]
    assert set(attrs) == {
        "entryUUID",
        "uid",
        "mail",
        "cn",
        "departmentNumber",
        "title",
        "employeeType",
        "employeeNumber",
        "manager",
        "hrStatus",
        "hrHireDate",
        "hrLeaveDate",
    }


def test_overrides_replace_and_extend_without_duplicates() -> None:
    amap = attribute_map(
        _cfg(attributes={"department": "ou", "location": "l", "email": "MAIL"}, username_attribute="cn")
    )
    attrs = requested_attributes(amap)
    assert "departmentNumber" not in attrs and "ou" in attrs and "l" in attrs
    assert amap.username == "cn"
    assert len({a.lower() for a in attrs}) == len(attrs)  # cn (username) == cn (display_name)


def test_ad_preset_requests_uac_and_upn() -> None:
    attrs = requested_attributes(attribute_map(_cfg(preset="ad", attributes={"status": "extStatus"})))
    assert {
        "objectGUID",
        "sAMAccountName",
        "userPrincipalName",
        "userAccountControl",
        "accountExpires",
        "employeeID",
        "company",
        "extStatus",
    } <= set(attrs)


# --------------------------------------------------------------------------- AD decoding


def test_object_guid_bytes_le_render_as_canonical_guid() -> None:
    raw = bytes.fromhex("78563412341278569abcdef012345678")
    assert decode_guid(raw) == "12345678-1234-5678-9abc-def012345678"
    u = uuid.uuid4()
    assert decode_guid(u.bytes_le) == str(u)
    assert decode_guid(b"{" + str(u).upper().encode() + b"}") == str(u)


@pytest.mark.parametrize("never", [0, 9223372036854775807])
def test_account_expires_never(never: int) -> None:
    assert filetime_to_iso(never) is None


def test_account_expires_filetime_to_utc_iso() -> None:
    moment = datetime(2025, 3, 31, 22, 0, tzinfo=UTC)
    assert filetime_to_iso(_filetime(moment)) == "2025-03-31T22:00:00+00:00"
    assert filetime_to_iso(116444736000000000) == "1970-01-01T00:00:00+00:00"


@given(st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(9000, 1, 1)))
def test_filetime_roundtrip(moment: datetime) -> None:
    moment = moment.replace(tzinfo=UTC)
    assert datetime.fromisoformat(filetime_to_iso(_filetime(moment)) or "") == moment


def _ad_entry(uac: int, expires: int) -> dict[str, list[bytes]]:
    guid = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    return {
        "objectguid": [guid.bytes_le],
        "samaccountname": [b"jsmith"],
        "userprincipalname": [b"jsmith@corp.example"],
        "useraccountcontrol": [str(uac).encode()],
        "accountexpires": [str(expires).encode()],
        "department": [b"Risk"],
    }


def test_ad_entry_enabled_account_never_expires() -> None:
    amap = attribute_map(_cfg(preset="ad"))
    entry = map_entry("CN=J,DC=corp", _ad_entry(0x200, 9223372036854775807), amap)
    assert entry.enabled is True
    assert entry.attributes["stable_id"] == ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",)
    assert entry.attributes["upn"] == ("jsmith@corp.example",)
    assert entry.attributes["status"] == ("active",)
    assert "leave_date" not in entry.attributes and not entry.problems


def test_ad_entry_disabled_account_with_expiry() -> None:
    amap = attribute_map(_cfg(preset="ad"))
    expires = _filetime(datetime(2024, 1, 15, tzinfo=UTC))
    entry = map_entry("CN=J,DC=corp", _ad_entry(0x202, expires), amap)
    assert entry.enabled is False
    assert entry.attributes["status"] == ("inactive",)
    assert entry.attributes["leave_date"] == ("2024-01-15T00:00:00+00:00",)


def test_ad_garbage_uac_is_disabled_with_problem() -> None:
    raw = _ad_entry(0, 0) | {"useraccountcontrol": [b"oops"]}
    entry = map_entry("CN=J", raw, attribute_map(_cfg(preset="ad")))
    assert entry.enabled is False
    assert any("userAccountControl" in p for p in entry.problems)


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01", "2024-03-01"),
        ("20240301000000Z", "2024-03-01T00:00:00+00:00"),
        ("20261206162003Z", "2026-12-06T16:20:03+00:00"),
        ("20261206162003+0100", "2026-12-06T16:20:03+01:00"),
        ("20240301", "2024-03-01"),
        ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00+00:00"),
        (" 2030-12-31 ", "2030-12-31"),
    ],
)
def test_normalize_date(text: str, expected: str) -> None:
    assert normalize_date(text) == expected


def test_bad_date_is_kept_raw_with_problem() -> None:
    """Never silently dropped: kept as written (the core fails safe on it) and reported."""
    raw = {"entryuuid": [b"u1"], "uid": [b"x"], "hrleavedate": [b"31/12/2024"]}
    entry = map_entry("uid=x", raw, attribute_map(_cfg()))
    assert entry.attributes["leave_date"] == ("31/12/2024",)
    assert entry.problems == [
        "uid=x: leave_date (hrLeaveDate) = '31/12/2024' is not a date; the person is treated as a leaver"
    ]


# --------------------------------------------------------------------------- groups


def test_norm_dn_spacing_case_and_escapes() -> None:
    assert norm_dn("CN=Desk A , OU=Groups,DC=X") == "cn=desk a,ou=groups,dc=x"
    assert norm_dn(r"cn=a\2cb,dc=x") == norm_dn(r"cn=a\,b,dc=x") == r"cn=a\,b,dc=x"
    assert norm_dn(r"cn=ops (*) \\ desk,dc=x") == r"cn=ops (*) \\ desk,dc=x"
    assert norm_dn("uid=a+cn=B,dc=x") == norm_dn("cn=b+uid=a,dc=x")


def test_deep_chain_and_cycle_without_recursion_limit() -> None:
    depth = 5000  # far beyond Python's recursion limit
    groups = [GroupRecord(f"cn=g{i},dc=x", (f"G{i}",), (f"cn=g{i - 1},dc=x",)) for i in range(1, depth)]
    groups.append(GroupRecord("cn=g0,dc=x", ("g0",), ("uid=u,dc=x", f"cn=g{depth - 1},dc=x")))
    got = GroupGraph(groups).groups_of("UID=u, DC=x")
    assert len(got) == 2 * depth
    assert {"g0", "g4999", "cn=g2500,dc=x"} <= got


def test_snapshot_skips_and_counts_entries_without_ids() -> None:
    users = [
        ("uid=a,dc=x", {"entryuuid": [b"1"], "uid": [b"a"]}),
        ("uid=b,dc=x", {"uid": [b"b"]}),
        ("uid=c,dc=x", {"entryuuid": [b"3"]}),
        ("uid=d,dc=x", {"entryuuid": [b"1"], "uid": [b"d"]}),
    ]
    groups = [GroupRecord("cn=g,dc=x", ("G",), ("uid=a,dc=x",))]
    snap = build_snapshot("s", users, groups, attribute_map(_cfg()))
    assert [i.username for i in snap.identities] == ["a"]
    assert snap.identities[0].groups == {"g", "cn=g,dc=x"}
    assert snap.group_count == 1
    assert any("2 entries skipped" in w and "uid=b,dc=x" in w for w in snap.warnings)
    assert any("duplicate stable id 1" in w for w in snap.warnings)


def test_uid_suffix_on_unique_member_is_ignored() -> None:
    rec = group_record("cn=g,dc=x", {"cn": [b"g"], "uniquemember": [b"uid=a,dc=x#'0101'B"]})
    assert rec.members == ("uid=a,dc=x",)
    assert GroupGraph([rec]).groups_of("uid=a,dc=x") == {"g", "cn=g,dc=x"}


def test_struct_helper_sanity() -> None:
    # objectGUID as AD stores it: first three fields little-endian
    raw = struct.pack("<IHH", 0x01020304, 0x0506, 0x0708) + bytes(range(9, 17))
    assert decode_guid(raw).startswith("01020304-0506-0708-090a")


# --------------------------------------------------------------------------- AD ranged members


class _RangedConn:
    """Serves ``member;range=`` steps of 3 values like AD does with 1,500."""

    def __init__(self, members: list[bytes], fail_at: int | None = None) -> None:
        self.members = members
        self.fail_at = fail_at
        self.result: dict[str, object] = {}
        self.response: list[dict[str, object]] = []

    def search(self, dn: str, _filter: str, _scope: str, attributes: list[str]) -> None:
        lo = int(attributes[0].split("=")[1].split("-")[0])
        if lo == self.fail_at:
            self.result, self.response = {"result": 11, "description": "adminLimitExceeded"}, []
            return
        chunk = self.members[lo : lo + 3]
        hi = "*" if lo + 3 >= len(self.members) else str(lo + 2)
        self.result = {"result": 0}
        self.response = [{"raw_attributes": {f"member;range={lo}-{hi}": chunk}}]


def test_ad_ranged_member_attribute_is_completed() -> None:
    from provisioner.sources.ldap import LdapSource

    members = [f"CN=u{i},DC=corp".encode() for i in range(10)]
    source = LdapSource(_cfg(preset="ad"))
    raw = {"cn": [b"big"], "member;range=0-2": members[:3]}
    done = source._complete_ranges(_RangedConn(members), "CN=big,DC=corp", raw)  # type: ignore[arg-type]
    assert done["member"] == members
    assert not any(";range=" in k for k in done)


def test_ad_ranged_member_failure_is_incomplete() -> None:
    from provisioner.errors import SourceIncomplete
    from provisioner.sources.ldap import LdapSource

    members = [f"CN=u{i},DC=corp".encode() for i in range(10)]
    raw = {"member;range=0-2": members[:3]}
    with pytest.raises(SourceIncomplete, match="adminLimitExceeded"):
        LdapSource(_cfg(preset="ad"))._complete_ranges(_RangedConn(members, fail_at=6), "CN=big", raw)  # type: ignore[arg-type]


def test_factory_builds_entra_source_without_network() -> None:
    from provisioner.config import EntraSourceConfig
    from provisioner.sources.entra import EntraSource
    from provisioner.sources.factory import build_source

    cfg = EntraSourceConfig(type="entra", name="e", tenant_id="t", client_id="c", client_secret="env:NOPE")
    source = build_source(cfg, referenced_groups={"Approvers"})
    assert isinstance(source, EntraSource) and source.referenced == {"approvers"}
    source.close()
