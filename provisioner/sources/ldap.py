"""LDAP / Active Directory source (ldap3, simple bind, paged search).

A read is all-or-nothing: any non-success search result (size, time or admin
limit, a failed page) raises :class:`SourceIncomplete`; a connection or bind
problem raises :class:`SourceUnavailable`.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterator
from typing import Any, Protocol

import ldap3
import structlog
from ldap3.core.exceptions import LDAPException, LDAPSSLConfigurationError

from provisioner.config import LdapSourceConfig
from provisioner.core.model import SourceSnapshot
from provisioner.core.needs import ALL, SourceNeeds
from provisioner.errors import ConfigError, SourceIncomplete, SourceUnavailable
from provisioner.sources.attributes import AttributeMap, attribute_map, requested_attributes
from provisioner.sources.groups import GroupRecord, build_snapshot, group_record

log = structlog.get_logger(__name__)

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
GROUP_ATTRIBUTES = ["cn", "member", "uniqueMember"]
_RANGE = re.compile(r"^(?P<attr>[^;]+);range=(?P<lo>\d+)-(?P<hi>\d+|\*)$", re.IGNORECASE)

Entry = tuple[str, dict[str, list[bytes]]]


class KeyValueStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


class LdapSource:
    """Reads every user under ``user_base`` and every group under ``group_base``."""

    def __init__(
        self, config: LdapSourceConfig, store: KeyValueStore | None = None, needs: SourceNeeds = ALL
    ) -> None:
        self.config = config
        self.name = config.name
        self.needs = needs
        self.store = store
        self.amap: AttributeMap = attribute_map(config).restrict(needs)
        self._conn: ldap3.Connection | None = None
        self._referrals = 0

    # ---- Source protocol

    def read(self) -> SourceSnapshot:
        cfg = self.config
        self._referrals = 0
        conn = self._connect()
        try:
            users = list(self._search(conn, cfg.user_base, cfg.user_filter, self._user_attrs()))
            groups = self._read_groups(conn)
        except (LDAPException, OSError) as exc:
            raise SourceUnavailable(f"{cfg.url}: LDAP read failed: {exc}") from exc
        finally:
            self.close()
        warnings = []
        if self._referrals:
            warnings.append(f"{self._referrals} search referral(s) not followed")
        snapshot = build_snapshot(self.name, users, groups, self.amap, warnings)
        log.info(
            "ldap source read",
            source=self.name,
            identities=len(snapshot.identities),
            groups=snapshot.group_count,
            warnings=len(snapshot.warnings),
        )
        return snapshot

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    # ---- connection

    def _tls(self) -> ldap3.Tls | None:
        cfg = self.config
        if not (cfg.url.lower().startswith("ldaps://") or cfg.start_tls):
            return None
        try:
            return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cfg.ca_file)
        except LDAPSSLConfigurationError as exc:
            raise ConfigError(f"source {self.name}: ca_file {cfg.ca_file}: {exc}") from exc

    def _connect(self) -> ldap3.Connection:
        cfg = self.config
        server = ldap3.Server(
            cfg.url,
            use_ssl=cfg.url.lower().startswith("ldaps://"),
            tls=self._tls(),
            get_info=ldap3.NONE,
            connect_timeout=cfg.timeout,
        )
        who = cfg.bind_dn or "anonymous"
        password = cfg.bind_password.resolve() if cfg.bind_password is not None else None
        try:
            conn = ldap3.Connection(
                server,
                user=cfg.bind_dn,
                password=password,
                receive_timeout=max(1, math.ceil(cfg.timeout)),
                read_only=True,
                auto_referrals=False,
                auto_range=False,
                return_empty_attributes=False,
                check_names=False,
                raise_exceptions=False,
            )
            _decode_entries_raw(conn)
            self._conn = conn
            conn.open()
            if cfg.start_tls:
                conn.start_tls()
            bound = conn.bind()
        except (LDAPException, OSError) as exc:
            self.close()
            raise SourceUnavailable(f"cannot connect to {cfg.url} (bind DN {who}): {exc}") from exc
        if not bound:
            result = conn.result or {}
            self.close()
            raise SourceUnavailable(
                f"bind to {cfg.url} as {who} failed: "
                f"{result.get('description', 'unknown')} {result.get('message', '')}".rstrip()
            )
        return conn

    # ---- searching

    def _user_attrs(self) -> list[str]:
        return requested_attributes(self.amap)

    def _search(
        self, conn: ldap3.Connection, base: str, search_filter: str, attrs: list[str]
    ) -> Iterator[Entry]:
        """Every entry of a subtree search, page by page (manual cookie loop)."""
        cookie: bytes | None = None
        while True:
            conn.search(
                base,
                search_filter,
                search_scope=ldap3.SUBTREE,
                attributes=attrs,
                paged_size=self.config.page_size,
                paged_cookie=cookie,
            )
            self._check(conn.result, base)
            for item in conn.response or ():
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["raw_attributes"]
                else:
                    self._referrals += 1
            cookie = _cookie(conn.result)
            if not cookie:
                return

    def _check(self, result: dict[str, Any] | None, base: str) -> None:
        if not result or result.get("result") != 0:
            what = (result or {}).get("description", "no result")
            message = (result or {}).get("message", "")
            raise SourceIncomplete(
                f"{self.config.url}: search under {base} did not complete: {what}"
                + (f" ({message})" if message else "")
                + "; nothing read from this source is used"
            )

    def _read_groups(self, conn: ldap3.Connection) -> list[GroupRecord]:
        cfg = self.config
        if not cfg.group_base:
            return []
        records = []
        for dn, raw in self._search(conn, cfg.group_base, cfg.group_filter, GROUP_ATTRIBUTES):
            records.append(group_record(dn, self._complete_ranges(conn, dn, raw)))
        return records

    def _complete_ranges(
        self, conn: ldap3.Connection, dn: str, raw: dict[str, list[bytes]]
    ) -> dict[str, list[bytes]]:
        """Fetch the rest of AD ranged attributes (``member;range=0-1499``)."""
        for key in [k for k in raw if ";range=" in k]:
            values = raw.pop(key)
            m = _RANGE.match(key)
            if m is None:
                raise SourceIncomplete(f"{dn}: unexpected ranged attribute {key}")
            attr, hi = m["attr"], m["hi"]
            while hi != "*":
                step = f"{attr};range={int(hi) + 1}-*"
                conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[step])
                self._check(conn.result, dn)
                got = _ranged_values(conn.response or [], attr)
                if got is None:
                    raise SourceIncomplete(f"{dn}: member range {step} could not be read")
                more, hi = got
                values.extend(more)
            raw.setdefault(attr.lower(), []).extend(values)
        return raw


def _decode_entries_raw(conn: ldap3.Connection) -> None:
    """Decode search result entries straight from the BER tree ldap3 has parsed:
    DN as text, attribute names lower-cased, values as bytes, nothing else.

    ldap3 would also build a second, schema-formatted copy of every value and a
    case-insensitive dict per entry; for a full directory read that costs more
    than the network.  Only this connection's strategy is changed.
    """
    strategy = conn.strategy
    generic = strategy.decode_response_fast

    def decode(message: dict[str, Any]) -> dict[str, Any]:
        if message["protocolOp"] != 4:  # not a searchResEntry
            return generic(message)  # type: ignore[no-any-return]
        payload = message["payload"]
        raw: dict[str, list[bytes]] = {}
        for attribute in payload[1][3]:
            name_node, values_node = attribute[3]
            name = bytes(name_node[3]).decode("utf-8", "replace").lower()
            values = [bytes(v[3]) for v in values_node[3]]
            if name in raw:
                raw[name].extend(values)
            else:
                raw[name] = values
        dn = bytes(payload[0][3]).decode("utf-8", "replace")
        return {"type": "searchResEntry", "dn": dn, "raw_attributes": raw, "attributes": {}}

    strategy.decode_response_fast = decode


def _ranged_values(response: list[dict[str, Any]], attr: str) -> tuple[list[bytes], str] | None:
    for item in response:
        for key, values in (item.get("raw_attributes") or {}).items():
            m = _RANGE.match(key)
            if m and m["attr"].lower() == attr.lower():
                return list(values), m["hi"]
    return None


def _cookie(result: dict[str, Any] | None) -> bytes | None:
    controls = (result or {}).get("controls") or {}
    value = controls.get(PAGED_RESULTS_OID, {}).get("value") or {}
    cookie = value.get("cookie")
    return cookie if isinstance(cookie, bytes) and cookie else None
