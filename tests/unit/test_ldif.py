"""The LDIF reader and LdifSource, including the shipped sample directory."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from provisioner.config import LdifSourceConfig
from provisioner.core.values.model import Identity, SourceSnapshot
from provisioner.errors import ConfigError
from provisioner.sources.factory import build_source
from provisioner.sources.ldif import LdifSource, parse_ldif

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "directory.ldif"


def _cfg(path: Path | str, **kw: object) -> LdifSourceConfig:
    return LdifSourceConfig.model_validate({"type": "ldif", "name": "file", "path": str(path), **kw})


def test_parser_handles_comments_folding_base64_and_version() -> None:
    text = (
        "version: 1\n"
        "# a comment\n"
        "#  folded comment\n"
        " continues here\n"
        "dn: uid=a,\n"
        " dc=x\n"
        "cn:: " + base64.b64encode("Zoë O'Neil".encode()).decode() + "\n"
        "description: long\n"
        "  value\n"
        "\n"
        "\n"
        "dn: cn=g,dc=x\r\n"
        "member: uid=a,dc=x\r\n"
    )
    a, g = parse_ldif(text, "t.ldif")
    assert a.dn == "uid=a,dc=x" and a.line == 5
    assert a.attributes["cn"] == ["Zoë O'Neil".encode()]
    assert a.attributes["description"] == [b"long value"]
    assert g.dn == "cn=g,dc=x" and g.line == 12 and g.attributes["member"] == [b"uid=a,dc=x"]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("dn: a=b\ncn x\n", 2, "expected 'attribute: value'"),
        ("dn: a=b\n\ncn: x\n", 3, "must start with 'dn:'"),
        (" folded\n", 1, "continuation line outside a record"),
        ("dn: a=b\ncn:: !!!notbase64\n", 2, "invalid base64"),
        ("dn: a=b\ndn: c=d\n", 2, "second 'dn:'"),
        ("dn: a=b\ncn:< file:///etc/passwd\n", 2, "URL values"),
        ("dn: a=b\nchangetype: delete\n", 2, "only content records"),
    ],
)
def test_malformed_ldif_names_file_and_line(text: str, line: int, what: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_ldif(text, "bad.ldif")
    assert f"bad.ldif:{line}:" in str(err.value)
    assert what in str(err.value)


def test_malformed_file_error_names_path(tmp_path: Path) -> None:
    path = tmp_path / "d.ldif"
    path.write_text("dn: uid=a,dc=x\nobjectClass: inetOrgPerson\nbroken line\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: expected"):
        LdifSource(_cfg(path)).read()


def test_missing_entry_uuid_names_file_and_entry_line(tmp_path: Path) -> None:
    path = tmp_path / "d.ldif"
    path.write_text(
        "dn: uid=a,dc=x\nobjectClass: inetOrgPerson\nuid: a\nentryUUID: 1\n\n"
        "# no id here\ndn: uid=b,dc=x\nobjectClass: inetOrgPerson\nuid: b\n"
    )
    with pytest.raises(ConfigError, match=rf"{path}:7: entry uid=b,dc=x has no entryUUID"):
        LdifSource(_cfg(path)).read()


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read LDIF"):
        LdifSource(_cfg(tmp_path / "nope.ldif")).read()


# --------------------------------------------------------------------------- sample directory


@pytest.fixture(scope="module")
def sample() -> SourceSnapshot:
    return build_source(_cfg("examples/directory.ldif"), EXAMPLE.parents[1]).read()


def _by_name(snap: SourceSnapshot) -> dict[str, Identity]:
    return {i.username: i for i in snap.identities}


def test_sample_directory_shape(sample: SourceSnapshot) -> None:
    by = _by_name(sample)
    assert 20 <= len(by) <= 30 and sample.group_count >= 5
    assert sample.warnings == ()
    departments = {i.first("department") for i in by.values()}
    assert departments == {"Trading", "Operations", "Compliance", "Risk", "IT", "Finance"}
    assert {i.first("employee_type") for i in by.values()} == {"employee", "contractor", "intern"}
    assert all(i.dn.endswith("ou=people,dc=northwind,dc=example") for i in by.values())
    assert len({i.stable_id for i in by.values()}) == len(by)


def test_sample_nested_group_and_lifecycle_data(sample: SourceSnapshot) -> None:
    by = _by_name(sample)
    trader = by["tobrien"]
    assert trader.first("display_name") == "Tadhg O'Brien"
    floor = "cn=trading-floor,ou=groups,dc=northwind,dc=example"
    assert {"desk-equities", "trading-floor", floor} <= trader.groups
    assert "trade-approvers" not in trader.groups
    leavers = [i.username for i in by.values() if i.first("status") == "terminated"]
    assert len(leavers) >= 2 and all(by[u].first("leave_date") for u in leavers)
    assert any((i.first("hire_date") or "") > "2030" for i in by.values())


def test_same_mapping_overrides_apply_to_ldif() -> None:
    src = LdifSource(_cfg(EXAMPLE, attributes={"display_name": "displayName", "given": "givenName"}))
    by = {i.username: i for i in src.read().identities}
    assert by["hmorrow"].first("given") == "Helena"
    assert by["hmorrow"].first("display_name") == "Helena Morrow"
