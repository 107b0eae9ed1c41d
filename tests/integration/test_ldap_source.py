"""LdapSource against a real, private slapd (see tests/support/slapd.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ldap3
import pytest

from provisioner.config import LdapSourceConfig, LdifSourceConfig
from provisioner.core.values.model import SourceSnapshot
from provisioner.errors import ConfigError, SourceIncomplete, SourceUnavailable
from provisioner.secrets import SecretRef
from provisioner.sources.factory import build_source
from provisioner.sources.ldap import LdapSource
from provisioner.sources.ldif import LdifSource
from tests.support.fixtures import LdapOu
from tests.support.slapd import (
    READER_DN,
    READER_PASSWORD,
    SUFFIX,
    Record,
    Slapd,
    base_records,
    free_port,
)

BULK_USERS = 5000


# --------------------------------------------------------------------------- mapping


def test_reads_mapped_identity_with_dn_and_uuid(ldap_ou: LdapOu) -> None:
    dn = ldap_ou.add_user(
        "jdoe",
        cn="Jane Doe",
        mail="jane@example.test",
        departmentNumber="Trading",
        title="Equity Trader",
        employeeType="contractor",
        employeeNumber="E100",
        hrStatus="active",
        hrHireDate="20300102000000Z",
        hrLeaveDate="2031-05-06",
    )
    snap = LdapSource(ldap_ou.config()).read()
    (ident,) = snap.identities
    assert ident.username == "jdoe"
    assert ident.dn == dn
    assert len(ident.stable_id) == 36 and ident.stable_id.count("-") == 4
    assert ident.first("department") == "Trading"
    assert ident.first("title") == "Equity Trader"
    assert ident.first("employee_type") == "contractor"
    assert ident.first("employee_id") == "E100"
    assert ident.first("hire_date") == "2030-01-02T00:00:00+00:00"  # a timestamp keeps its time
    assert ident.first("leave_date") == "2031-05-06"
    assert ident.first("display_name") == "Jane Doe"
    assert "sn" not in ident.attributes
    assert snap.complete and snap.read_at is not None and snap.source == ldap_ou.config().name


def test_entries_without_username_are_skipped_and_counted(ldap_ou: LdapOu) -> None:
    ldap_ou.add_user("ok")
    ldap_ou.add(
        [
            (
                f"cn=nouid,{ldap_ou.people}",
                {"objectClass": "inetOrgPerson", "cn": "nouid", "sn": "x"},
            )
        ]
    )
    snap = LdapSource(ldap_ou.config()).read()
    assert [i.username for i in snap.identities] == ["ok"]
    assert any("1 entry skipped" in w and "cn=nouid" in w for w in snap.warnings)


def test_config_override_reads_extra_attribute(ldap_ou: LdapOu) -> None:
    ldap_ou.add_user("amy", departmentNumber="IT", ou="Desk A", l="London")
    cfg = ldap_ou.config(attributes={"department": "ou", "location": "l"})
    (ident,) = LdapSource(cfg).read().identities
    assert ident.first("department") == "Desk A"
    assert ident.first("location") == "London"


def test_modify_and_delete_are_seen(ldap_ou: LdapOu) -> None:
    a = ldap_ou.add_user("a", title="Analyst")
    b = ldap_ou.add_user("b")
    ldap_ou.modify(a, title="Head of Trading")
    ldap_ou.delete(b)
    (ident,) = LdapSource(ldap_ou.config()).read().identities
    assert ident.first("title") == "Head of Trading"


# --------------------------------------------------------------------------- groups


def test_nested_groups_three_levels_with_cycle(ldap_ou: LdapOu) -> None:
    u = ldap_ou.add_user("trader")
    other = ldap_ou.add_user("other")
    g1 = ldap_ou.add_group("desk-equities", [u])
    g2 = ldap_ou.add_group("trading-floor", [g1])
    g3 = ldap_ou.add_group("front-office", [g2], unique=True)
    # cycle: front-office -> trading-floor already; add trading-floor <- front-office
    ldap_ou.modify(g2, member=[g1, g3])
    ldap_ou.add_group("unrelated", [other])
    groups = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
    snap = LdapSource(ldap_ou.config(group_filter=groups)).read()
    by_name = {i.username: i for i in snap.identities}
    expected = {"desk-equities", "trading-floor", "front-office", g1.lower(), g2.lower(), g3.lower()}
    assert by_name["trader"].groups == frozenset(expected)
    assert by_name["other"].groups == {"unrelated", ldap_ou.group_dn("unrelated").lower()}
    assert snap.group_count == 4


def test_special_characters_in_group_names_and_values(ldap_ou: LdapOu) -> None:
    u = ldap_ou.add_user("esc", title="a*b(c)d\\e", cn="O'Brien (ops) *")
    weird = ldap_ou.add_group("ops (*) \\ desk, \"x\"", [u])
    ldap_ou.add_group("outer*)(uid=*", [weird])
    cfg = ldap_ou.config(user_filter="(&(objectClass=inetOrgPerson)(title=a\\2ab\\28c\\29d\\5ce))")
    (ident,) = LdapSource(cfg).read().identities
    assert ident.first("title") == "a*b(c)d\\e"
    assert ident.first("display_name") == "O'Brien (ops) *"
    assert {"ops (*) \\ desk, \"x\"", "outer*)(uid=*"} <= ident.groups
    assert weird.lower() in ident.groups


# --------------------------------------------------------------------------- failures


def test_wrong_password_is_unavailable_and_names_url_and_dn(
    slapd: Slapd, ldap_ou: LdapOu, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PW", "not-the-password")
    cfg = ldap_ou.config(bind_password=SecretRef("env:WRONG_PW"))
    with pytest.raises(SourceUnavailable) as err:
        LdapSource(cfg).read()
    text = str(err.value)
    assert slapd.url in text and READER_DN in text
    assert "not-the-password" not in text and "invalidCredentials" in text


def test_closed_port_is_unavailable(ldap_ou: LdapOu) -> None:
    cfg = ldap_ou.config(url=f"ldap://127.0.0.1:{free_port()}", timeout=2.0)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="cannot connect"):
        LdapSource(cfg).read()
    assert time.monotonic() - started < 10


def test_missing_base_is_incomplete_not_empty(ldap_ou: LdapOu) -> None:
    cfg = ldap_ou.config(user_base=f"ou=nope,{SUFFIX}")
    with pytest.raises(SourceIncomplete, match="noSuchObject"):
        LdapSource(cfg).read()


# --------------------------------------------------------------------------- TLS


def test_ldaps_with_generated_ca(slapd: Slapd, ldap_ou: LdapOu) -> None:
    ldap_ou.add_user("tls1")
    cfg = ldap_ou.config(url=slapd.ldaps_url, ca_file=str(slapd.ca_file))
    assert [i.username for i in LdapSource(cfg).read().identities] == ["tls1"]


def test_start_tls_with_generated_ca(slapd: Slapd, ldap_ou: LdapOu) -> None:
    ldap_ou.add_user("tls2")
    cfg = ldap_ou.config(start_tls=True, ca_file=str(slapd.ca_file))
    assert [i.username for i in LdapSource(cfg).read().identities] == ["tls2"]


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_wrong_ca_is_unavailable(slapd: Slapd, ldap_ou: LdapOu, mode: str) -> None:
    other = str(slapd.dir / "other-ca.pem")
    if mode == "ldaps":
        cfg = ldap_ou.config(url=slapd.ldaps_url, ca_file=other)
    else:
        cfg = ldap_ou.config(start_tls=True, ca_file=other)
    with pytest.raises(SourceUnavailable, match=r"certificate verify failed|CERTIFICATE"):
        LdapSource(cfg).read()


def test_hostname_mismatch_is_unavailable(slapd: Slapd, ldap_ou: LdapOu) -> None:
    url = slapd.ldaps_url.replace("127.0.0.1", "localhost")  # cert names only the IP
    cfg = ldap_ou.config(url=url, ca_file=str(slapd.ca_file))
    with pytest.raises(SourceUnavailable, match="doesn't match"):
        LdapSource(cfg).read()


def test_missing_slapd_binary_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.support.slapd as harness

    monkeypatch.setattr(harness, "SLAPD", Path("/nonexistent/slapd"))
    with pytest.raises(harness.SlapdMissing, match="scripts/install-deps"):
        harness.Slapd()


def test_missing_ca_file_is_config_error(slapd: Slapd, ldap_ou: LdapOu) -> None:
    cfg = ldap_ou.config(url=slapd.ldaps_url, ca_file="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match="ca_file"):
        LdapSource(cfg).read()


# --------------------------------------------------------------------------- paging & limits


def _bulk_people(n: int) -> Iterator[Record]:
    base = f"ou=bulk,{SUFFIX}"
    yield base, {"objectClass": "organizationalUnit", "ou": "bulk"}
    for i in range(n):
        uid = f"u{i:05d}"
        yield (
            f"uid={uid},{base}",
            {
                "objectClass": ["inetOrgPerson", "hrPerson"],
                "uid": uid,
                "cn": f"User {i}",
                "sn": "User",
                "departmentNumber": "Trading",
                "hrStatus": "active",
            },
        )


def _bind_user(dn: str) -> Record:
    cn = dn.split(",")[0].split("=")[1]
    classes = ["organizationalRole", "simpleSecurityObject"]
    return dn, {"objectClass": classes, "cn": cn, "userPassword": READER_PASSWORD}


LIMITED_USERS = {
    # bind user -> slapd limits beyond the 1,000-entry size limit everyone has
    "capped": "size.prtotal=2000",  # paging stops after 2,000 entries in total
    "pagecap": "size.pr=1000 size.prtotal=unlimited",  # pages of at most 1,000
    "nopaging": "size.prtotal=disabled",  # no paging at all
}


@pytest.fixture(scope="module")
def bulk_slapd() -> Iterator[Slapd]:
    """5,000 users behind a server size limit of 1,000; the reader may page
    through all of them, the LIMITED_USERS hit a real server limit."""
    limits = [f'limits dn.exact="{READER_DN}" size.prtotal=unlimited'] + [
        f'limits dn.exact="cn={cn},{SUFFIX}" size.soft=1000 size.hard=1000 {extra}'
        for cn, extra in LIMITED_USERS.items()
    ]
    server = Slapd(sizelimit=1000, limits=limits)
    try:
        binds = [_bind_user(f"cn={cn},{SUFFIX}") for cn in LIMITED_USERS]
        server.slapadd([*binds, *_bulk_people(BULK_USERS)])
        yield server.start()
    finally:
        server.cleanup()


def _bulk_config(server: Slapd, **overrides: object) -> LdapSourceConfig:
    return server.source_config(user_base=f"ou=bulk,{SUFFIX}", group_base=None, **overrides)


def test_paging_returns_all_users_beyond_size_limit(bulk_slapd: Slapd) -> None:
    snap = LdapSource(_bulk_config(bulk_slapd, page_size=500)).read()
    assert len(snap.identities) == BULK_USERS
    assert len({i.stable_id for i in snap.identities}) == BULK_USERS


def test_unpaged_search_is_cut_by_size_limit(bulk_slapd: Slapd) -> None:
    """Without paging the server stops at 1,000: this is what paging avoids."""
    conn = ldap3.Connection(bulk_slapd.url, READER_DN, READER_PASSWORD, auto_bind=True)
    conn.search(f"ou=bulk,{SUFFIX}", "(uid=*)", attributes=["uid"])
    assert conn.result["description"] == "sizeLimitExceeded"
    assert len(conn.entries) == 1000


@pytest.mark.parametrize(
    ("user", "page_size", "reason"),
    [
        ("capped", 500, "sizeLimitExceeded"),  # fails on the 5th page, after 2,000 entries
        ("pagecap", 5000, "adminLimitExceeded"),  # page size above the server's page limit
        ("nopaging", 500, "adminLimitExceeded"),  # server refuses paging
    ],
)
def test_server_limits_make_the_read_incomplete(
    bulk_slapd: Slapd, user: str, page_size: int, reason: str
) -> None:
    cfg = _bulk_config(bulk_slapd, page_size=page_size, bind_dn=f"cn={user},{SUFFIX}")
    with pytest.raises(SourceIncomplete, match=reason):
        LdapSource(cfg).read()


def test_default_prtotal_is_the_hard_limit(slapd_factory: Callable[..., Slapd]) -> None:
    """With only ``sizelimit 1000`` slapd cuts even paged searches after 1,000
    entries: 1,200 users then give SourceIncomplete, never 1,000 identities."""
    server = slapd_factory(sizelimit=1000)
    server.slapadd(_bulk_people(1200))
    server.start()
    with pytest.raises(SourceIncomplete, match="sizeLimitExceeded"):
        LdapSource(_bulk_config(server, page_size=300)).read()


def test_factory_builds_ldap_source(ldap_ou: LdapOu) -> None:
    ldap_ou.add_user("viafactory")
    source = build_source(ldap_ou.config())
    assert source.name.startswith("ldap-t")
    assert [i.username for i in source.read().identities] == ["viafactory"]


def test_sample_directory_reads_the_same_from_slapd_and_ldif(
    slapd_factory: Callable[..., Slapd],
) -> None:
    """examples/directory.ldif is valid for slapd (incl. hr.schema) and both
    sources map it identically (stable ids, attributes, nested groups)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "directory.ldif"
    server = slapd_factory(suffix="dc=northwind,dc=example")
    server.slapadd(example, with_base=False)
    server.start()
    server.add(base_records(server.suffix)[1:2])  # the read-only bind user
    from_ldap = LdapSource(server.source_config()).read()
    ldif_cfg = LdifSourceConfig(type="ldif", name="test-ldap", path=str(example))
    from_ldif = LdifSource(ldif_cfg).read()

    def view(snap: SourceSnapshot) -> dict[str, tuple[object, ...]]:
        return {
            i.stable_id: (i.username, i.dn, dict(i.attributes), i.groups, i.enabled)
            for i in snap.identities
        }

    assert len(from_ldap.identities) >= 20
    assert view(from_ldap) == view(from_ldif)
    assert from_ldap.group_count == from_ldif.group_count
