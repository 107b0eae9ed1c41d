"""Sign a person in with their directory credentials: LDAP simple bind over TLS.

Used by the access-review web page.  The person is found with the source's
service bind (the username escaped into the filter), then a second connection
binds as that entry's DN with the password given.  The bind always runs over
TLS: ``ldaps://`` or StartTLS (also when the source reads without it), with the
certificate checked against the source's ``ca_file``; an empty password is
refused before anything is sent (an LDAP "unauthenticated bind" succeeds with
any DN).  The password is never logged or kept.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from provisioner.config import LdapSourceConfig
from provisioner.errors import PermanentError, SourceUnavailable
from provisioner.sources.attributes import attribute_map


class SignInRefused(PermanentError):
    """Wrong username or password (deliberately not saying which)."""


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    username: str
    dn: str


class LdapAuthenticator:
    def __init__(self, config: LdapSourceConfig) -> None:
        self.config = config
        self.username_attr = attribute_map(config).username

    def _server(self) -> ldap3.Server:
        cfg = self.config
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cfg.ca_file, version=ssl.PROTOCOL_TLS_CLIENT)
        return ldap3.Server(cfg.url, use_ssl=cfg.url.lower().startswith("ldaps://"), tls=tls,
                            get_info=ldap3.NONE, connect_timeout=cfg.timeout)

    def _open(self, user: str | None, password: str | None) -> ldap3.Connection:
        """A TLS-protected connection bound as ``user`` (raises SignInRefused on a refused bind)."""
        cfg = self.config
        conn = ldap3.Connection(self._server(), user=user, password=password, read_only=True,
                                receive_timeout=max(1, math.ceil(cfg.timeout)), auto_referrals=False,
                                raise_exceptions=False)
        try:
            conn.open()
            if not cfg.url.lower().startswith("ldaps://") and not conn.start_tls():
                raise SourceUnavailable(f"{cfg.url}: StartTLS refused; sign-in needs TLS")
            bound = conn.bind()
        except (LDAPException, OSError, ssl.SSLError) as exc:
            conn.unbind()
            raise SourceUnavailable(f"cannot reach {cfg.url} over TLS for sign-in: {exc}") from exc
        if not bound:
            conn.unbind()
            raise SignInRefused("wrong username or password")
        return conn

    def find(self, username: str) -> DirectoryUser | None:
        cfg = self.config
        password = cfg.bind_password.resolve() if cfg.bind_password is not None else None
        try:
            conn = self._open(cfg.bind_dn, password)
        except SignInRefused as exc:
            raise SourceUnavailable(f"{cfg.url}: the service bind as {cfg.bind_dn} was refused") from exc
        try:
            flt = f"(&{cfg.user_filter}({self.username_attr}={escape_filter_chars(username)}))"
            conn.search(cfg.user_base, flt, attributes=[self.username_attr], size_limit=2)
            entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        finally:
            conn.unbind()
        if len(entries) != 1:
            return None
        values = entries[0].get("attributes", {}).get(self.username_attr)
        name = values[0] if isinstance(values, list) and values else values
        return DirectoryUser(str(name or username), str(entries[0]["dn"]))

    def authenticate(self, username: str, password: str) -> DirectoryUser:
        """The directory user, or SignInRefused (SourceUnavailable when the directory cannot be reached)."""
        if not username.strip() or not password:
            raise SignInRefused("wrong username or password")
        user = self.find(username.strip())
        if user is None:
            raise SignInRefused("wrong username or password")
        self._open(user.dn, password).unbind()
        return user
