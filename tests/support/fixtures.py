"""pytest fixtures around :mod:`tests.support.slapd`.

``slapd``        session-wide private server (TLS on) with ou=people, ou=groups.
``ldap_ou``      a fresh ``ou=t<random>`` subtree per test with people/groups
                 below it and helpers to add users/groups and build a config.
``slapd_factory`` start extra servers with their own settings (limits, data).

A missing /usr/sbin/slapd fails the test (never skips): run scripts/install-deps.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from provisioner.config import LdapSourceConfig
from tests.support.slapd import SUFFIX, Record, Slapd, SlapdMissing, Value


def _new_slapd(**kwargs: Any) -> Slapd:
    try:
        return Slapd(**kwargs)
    except SlapdMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    server = _new_slapd(tls=True)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def slapd_factory() -> Iterator[Callable[..., Slapd]]:
    """``slapd_factory(sizelimit=..., limits=[...], tls=False)`` -> a stopped
    Slapd; call ``.slapadd(records)`` then ``.start()``.  Cleaned up afterwards."""
    made: list[Slapd] = []

    def make(**kwargs: Any) -> Slapd:
        server = _new_slapd(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.cleanup()


class LdapOu:
    """A private subtree ``ou=t<hex>,dc=example,dc=test`` on the shared server."""

    def __init__(self, server: Slapd) -> None:
        self.server = server
        self.ou = "t" + secrets.token_hex(4)
        self.base = f"ou={self.ou},{SUFFIX}"
        self.people = f"ou=people,{self.base}"
        self.groups = f"ou=groups,{self.base}"
        server.add(
            [
                (self.base, {"objectClass": "organizationalUnit", "ou": self.ou}),
                (self.people, {"objectClass": "organizationalUnit", "ou": "people"}),
                (self.groups, {"objectClass": "organizationalUnit", "ou": "groups"}),
            ]
        )

    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{self.people}"

    def group_dn(self, cn: str) -> str:
        return f"cn={_rdn_escape(cn)},{self.groups}"

    def add_user(self, uid: str, **attrs: Sequence[Value] | Value) -> str:
        """Add an inetOrgPerson+hrPerson; ``attrs`` override the defaults."""
        dn = self.user_dn(uid)
        entry: dict[str, Sequence[Value] | Value] = {
            "objectClass": ["inetOrgPerson", "hrPerson"],
            "uid": uid,
            "cn": uid.title(),
            "sn": uid.title(),
            **attrs,
        }
        self.server.add([(dn, entry)])
        return dn

    def add_users(self, users: Mapping[str, Mapping[str, Sequence[Value] | Value]]) -> list[str]:
        return [self.add_user(uid, **attrs) for uid, attrs in users.items()]

    def add_group(self, cn: str, members: Sequence[str], *, unique: bool = False) -> str:
        """groupOfNames (or groupOfUniqueNames) with member DNs (users or groups)."""
        dn = self.group_dn(cn)
        cls, attr = ("groupOfUniqueNames", "uniqueMember") if unique else ("groupOfNames", "member")
        self.server.add([(dn, {"objectClass": cls, "cn": cn, attr: list(members) or [""]})])
        return dn

    def add(self, records: Sequence[Record]) -> None:
        self.server.add(records)

    def modify(self, dn: str, **replace: Sequence[Value] | Value) -> None:
        self.server.modify(dn, **replace)

    def delete(self, dn: str) -> None:
        self.server.delete(dn)

    def config(self, **overrides: Any) -> LdapSourceConfig:
        # A unique source name per subtree: a managed role remembers its source, and a
        # run treats the missing identities of ITS source as leavers, so tests running
        # at the same time against one PostgreSQL must never share a source name.
        data = {"name": f"ldap-{self.ou}", "user_base": self.people, "group_base": self.groups, **overrides}
        return self.server.source_config(**data)


def _rdn_escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    return "\\" + out if out.startswith(("#", " ")) else out


@pytest.fixture
def ldap_ou(slapd: Slapd) -> LdapOu:
    return LdapOu(slapd)
