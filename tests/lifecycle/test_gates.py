"""The breaker and the source health gate against a real slapd and PostgreSQL:
every way a directory can look emptier than it is leads to zero revocations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import cli
from provisioner.errors import BreakerTripped, SourceIncomplete, SourceUnavailable, SourceUnhealthy
from tests.lifecycle.support import RULES, STRICT, access, audit_kinds, edit_config, person, setup
from tests.support.e2e import make_setup
from tests.support.fixtures import LdapOu
from tests.support.slapd import SUFFIX, Slapd

USERS = 10


def staffed(tmp_path: Path, ldap_ou: LdapOu, prefix: str, extra: str = STRICT):
    dns = [ldap_ou.add_user(f"u{i}", **person("Trading", "Equity Trader")) for i in range(USERS)]
    s = setup(tmp_path, ldap_ou, prefix, extra=extra)
    s.apply()
    before = access(prefix)
    assert sum(1 for login, groups in before.values() if login and groups) == USERS
    return s, dns, before


def test_empty_source_revokes_nothing(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    s, dns, before = staffed(tmp_path, ldap_ou, role_prefix)
    for dn in dns:
        ldap_ou.delete(dn)
    with pytest.raises(SourceUnhealthy, match="no identities"):
        s.apply()
    assert access(role_prefix) == before


def test_one_letter_typo_in_the_filter_revokes_nothing(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    s, _, before = staffed(tmp_path, ldap_ou, role_prefix)
    edit_config(s, "(objectClass=inetOrgPerson)", "(objectClass=inetOrgPersn)")
    with pytest.raises(SourceUnhealthy):
        s.plan()
    with pytest.raises(SourceUnhealthy):
        s.apply()
    assert access(role_prefix) == before


def test_half_the_users_missing_stops_at_the_health_gate(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    s, dns, before = staffed(tmp_path, ldap_ou, role_prefix)
    for dn in dns[: USERS // 2]:
        ldap_ou.delete(dn)
    with pytest.raises(SourceUnhealthy, match="50% fewer than the baseline of 10"):
        s.apply()
    assert access(role_prefix) == before


def test_half_the_users_missing_trips_the_breaker_then_override(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """With the health gate opened, the breaker still refuses (exit 4, audit
    record); ``--allow-mass-revocation --reason`` applies once, recorded."""
    s, dns, before = staffed(
        tmp_path, ldap_ou, role_prefix, STRICT.replace("max_identity_drop = 0.2", "max_identity_drop = 1.0")
    )
    for dn in dns[: USERS // 2]:
        ldap_ou.delete(dn)
    with pytest.raises(BreakerTripped, match="5 of 10 managed identities"):
        s.apply()
    assert access(role_prefix) == before
    runner = CliRunner()
    result = runner.invoke(cli, ["apply", "-c", str(s.path), "--reason", "CHG-41"])
    assert result.exit_code == 4, result.output
    plan = runner.invoke(cli, ["plan", "-c", str(s.path)])
    assert plan.exit_code == 4, plan.output
    assert access(role_prefix) == before
    refused = runner.invoke(cli, ["apply", "-c", str(s.path), "--allow-mass-revocation"])
    assert refused.exit_code == 2 and "--reason" in refused.output
    assert access(role_prefix) == before
    done = runner.invoke(cli, ["apply", "-c", str(s.path), "--allow-mass-revocation", "--reason", "CHG-42 desk closed"])
    assert done.exit_code == 0, done.output
    after = access(role_prefix)
    gone = {f"{role_prefix}u{i}" for i in range(USERS // 2)}
    assert all(after[r] == (False, frozenset()) for r in gone)
    kinds = [k for k, _ in audit_kinds(s)]
    assert kinds.count("breaker_tripped") >= 2 and kinds.count("override") == 1
    again = runner.invoke(cli, ["plan", "-c", str(s.path), "--detailed-exitcode"])
    assert again.exit_code == 0, again.output


def test_renamed_ou_revokes_nothing(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    s, _, before = staffed(tmp_path, ldap_ou, role_prefix)
    with ldap_ou.server.admin() as conn:
        assert conn.modify_dn(ldap_ou.people, "ou=staff")
    with pytest.raises(SourceIncomplete, match="noSuchObject"):
        s.apply()
    assert access(role_prefix) == before


def test_failed_bind_revokes_nothing(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    s, _, before = staffed(tmp_path, ldap_ou, role_prefix)
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    text = s.path.read_text()
    start = text.index("bind_password = ")
    end = text.index("\n", start)
    s.path.write_text(text[:start] + f'bind_password = "file:{wrong}"' + text[end:])
    with pytest.raises(SourceUnavailable, match="invalidCredentials"):
        s.apply()
    assert access(role_prefix) == before


def test_search_cut_by_size_limit_revokes_nothing(
    tmp_path: Path, slapd_factory: Callable[..., Slapd], role_prefix: str
) -> None:
    server = slapd_factory(sizelimit=3)
    server.slapadd([])
    server.start()
    people = f"ou=people,{SUFFIX}"

    def add(uid: str) -> None:
        attrs = {"objectClass": ["inetOrgPerson", "hrPerson"], "uid": uid, "cn": uid, "sn": uid}
        server.add([(f"uid={uid},{people}", {**attrs, **person("Trading", "Equity Trader")})])

    for uid in ("a", "b", "c"):
        add(uid)
    cfg = server.source_config(name=f"{role_prefix}src", group_base=None, page_size=2)
    s = make_setup(tmp_path, cfg, role_prefix, rules=RULES, extra=STRICT)
    s.apply()
    before = access(role_prefix)
    assert len([r for r, (login, _) in before.items() if login]) >= 3
    for uid in ("d", "e"):
        add(uid)
    with pytest.raises(SourceIncomplete, match="sizeLimitExceeded"):
        s.apply()
    assert access(role_prefix) == before
