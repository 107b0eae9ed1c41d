"""LDAP / Active Directory source (ldap3, simple bind, paged search).

A read is all-or-nothing: any non-success search result (size, time or admin
limit, a failed page, a member range that cannot be read to its end) raises
:class:`SourceIncomplete`; a connection or bind problem raises
:class:`SourceUnavailable`.  With a state store and ``incremental = true`` later
runs read only what changed (:mod:`provisioner.sources.incremental`).
"""

from __future__ import annotations

import contextlib
import gc
import math
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import ldap3
import structlog
from ldap3.core.exceptions import LDAPException, LDAPSSLConfigurationError
from ldap3.utils.conv import escape_filter_chars

from provisioner.config import LdapSourceConfig
from provisioner.core.identity.needs import ALL, SourceNeeds
from provisioner.core.values.model import SourceSnapshot
from provisioner.errors import ConfigError, SourceIncomplete, SourceUnavailable
from provisioner.sources.attributes import AttributeMap, attribute_map, requested_attributes
from provisioner.sources.groups import (
    GroupGraph,
    GroupRecord,
    Membership,
    ambiguous_names,
    build_snapshot,
    group_record,
)
from provisioner.sources.ldap_wire import (
    Entry,
    KeyValueStore,
    complete_ranges,
    cookie_of,
    decode_entries_raw,
    search_failure,
)
from provisioner.sources.memory import SourceMemory

log = structlog.get_logger(__name__)

IN_CHAIN = "1.2.840.113556.1.4.1941"
"""LDAP_MATCHING_RULE_IN_CHAIN: transitive membership evaluated by the AD server."""


class LdapSource:
    """Reads every user under ``user_base`` and every group under ``group_base``."""

    def __init__(
        self,
        config: LdapSourceConfig,
        store: KeyValueStore | None = None,
        needs: SourceNeeds = ALL,
        referenced_groups: Iterable[str] = (),
        memory: SourceMemory | None = None,
    ) -> None:
        """``memory``: what the owner keeps between reads (the daemon's warm state,
        sources/memory.py); a fresh one, for this source object only, when None."""
        self.config = config
        self.name = config.name
        self.needs = needs
        self.store = store
        self.memory = memory if memory is not None else SourceMemory()
        self.referenced_groups = frozenset(g.lower() for g in referenced_groups)
        self.amap: AttributeMap = attribute_map(config).restrict(needs)
        self._conn: ldap3.Connection | None = None
        self.referrals = 0
        self.referral_uris: list[str] = []
        self.last_stats: dict[str, Any] = {}
        """Incremental reads: mode (full / incremental), why, how much changed."""

    # ---- Source protocol

    def read(self) -> SourceSnapshot:
        cfg = self.config
        self.referrals = 0
        self.referral_uris = []
        conn = self._connect()
        # A read allocates millions of small, long-lived objects and no cycles:
        # the cyclic GC would rescan them over and over (superlinear time).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if self.store is not None and cfg.incremental:
                from provisioner.sources.incremental import IncrementalReader

                reader = IncrementalReader(self, self.store, self.memory)
                snapshot: SourceSnapshot = reader.read(conn)
                self.last_stats = reader.stats
                if self.referrals:  # what hid behind a referral must be read again, in full
                    reader.saved.invalidate()
            else:
                snapshot = self._full_read(conn)
        except (LDAPException, OSError) as exc:
            raise SourceUnavailable(f"{cfg.url}: LDAP read failed: {exc}") from exc
        finally:
            if gc_was_enabled:
                gc.enable()
            self.close()
        snapshot = self.mark_partial(snapshot)
        log.info(
            "ldap source read",
            source=self.name,
            identities=len(snapshot.identities),
            groups=snapshot.group_count,
            warnings=len(snapshot.warnings),
        )
        return snapshot

    def _full_read(self, conn: ldap3.Connection) -> SourceSnapshot:
        cfg = self.config
        users = list(self.search(conn, cfg.user_base, cfg.user_filter, self.user_attrs()))
        groups = self.read_groups(conn)
        membership = self.membership(conn, groups)
        if isinstance(membership, GroupGraph):
            return build_snapshot(self.name, users, groups, self.amap, self.warnings(), self.memory.dns)
        from provisioner.sources.groups import assemble, user_record

        shared: dict[Any, Any] = {}
        records = [user_record(dn, raw, self.amap, shared) for dn, raw in users]
        return assemble(self.name, records, membership, self.amap, self.warnings())

    def warnings(self) -> list[str]:
        return []

    def mark_partial(self, snapshot: SourceSnapshot) -> SourceSnapshot:
        """A read that met referrals is partial: the entries behind them are unknown, so
        it carries an error notice and nobody of this source counts as vanished."""
        if not self.referrals:
            return snapshot
        uris = ", ".join(sorted(set(self.referral_uris))[:5]) or "no URI"
        error = (
            f"partial read: {self.referrals} search referral(s) not followed ({uris}); the entries "
            "behind them are unknown, so nobody of this source is disabled for being missing this run"
        )
        return replace(snapshot, complete=False, errors=(*snapshot.errors, error))

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
            decode_entries_raw(conn)
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

    def user_attrs(self) -> list[str]:
        return requested_attributes(self.amap)

    def group_attrs(self) -> list[str]:
        step = self.config.range_step
        member = f"member;range=0-{step - 1}" if step else "member"
        return ["cn", member, "uniqueMember"]

    def search(
        self, conn: ldap3.Connection, base: str, search_filter: str, attrs: list[str]
    ) -> Iterator[Entry]:
        """Every entry of a subtree search, page by page (manual cookie loop)."""
        cookie: bytes | None = None
        while True:
            conn.search(
                base,
                search_filter,
                search_scope=ldap3.SUBTREE,
                attributes=attrs or ldap3.NO_ATTRIBUTES,
                paged_size=self.config.page_size,
                paged_cookie=cookie,
            )
            self.check(conn.result, base)
            for item in conn.response or ():
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["raw_attributes"]
                else:
                    self.referrals += 1
                    self.referral_uris.extend(str(u) for u in item.get("uri") or ())
            cookie = cookie_of(conn.result)
            if not cookie:
                return

    def check(self, result: dict[str, Any] | None, base: str) -> None:
        problem = search_failure(result)
        if problem:
            raise SourceIncomplete(
                f"{self.config.url}: search under {base} did not complete: {problem}"
                "; nothing read from this source is used"
            )

    def read_groups(
        self,
        conn: ldap3.Connection,
        extra_filter: str = "",
        extra_attrs: list[str] | None = None,
        seen: Callable[[dict[str, list[bytes]]], None] | None = None,
    ) -> list[GroupRecord]:
        """Every group (``extra_filter`` narrows it); ``seen`` gets each raw entry."""
        cfg = self.config
        if not cfg.group_base:
            return []
        flt = f"(&{cfg.group_filter}{extra_filter})" if extra_filter else cfg.group_filter
        records = []
        for dn, raw in self.search(conn, cfg.group_base, flt, self.group_attrs() + (extra_attrs or [])):
            if seen is not None:
                seen(raw)
            records.append(group_record(dn, self._complete_ranges(conn, dn, raw)))
        return records

    def _complete_ranges(
        self, conn: ldap3.Connection, dn: str, raw: dict[str, list[bytes]]
    ) -> dict[str, list[bytes]]:
        return complete_ranges(self, conn, dn, raw, self.config.range_step)

    def fetch_range(self, conn: ldap3.Connection, dn: str, spec: str) -> list[dict[str, Any]]:
        """One ``member;range=lo-hi`` base search (a seam for tests that cut it short)."""
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[spec])
        self.check(conn.result, dn)
        return list(conn.response or [])

    # ---- nested groups

    def membership(self, conn: ldap3.Connection, groups: list[GroupRecord]) -> Membership:
        """Client-side nested resolution over every group read, or (``nested_groups =
        "in_chain"``, AD) one server-side in-chain search per group the rules name."""
        if self.config.nested_groups != "in_chain":
            return GroupGraph(groups, self.memory.dns)
        return InChain(self, conn, groups)


class InChain:
    """Transitive membership from ``(memberOf:1.2.840.113556.1.4.1941:=<group DN>)``
    for the groups the rules reference (by name or DN)."""

    def __init__(self, source: LdapSource, conn: ldap3.Connection, groups: list[GroupRecord]) -> None:
        self._count = len(groups)
        self._norm = norm = source.memory.dns
        self._by_member: dict[str, set[str]] = {}
        self.ambiguous: Mapping[str, tuple[str, ...]] = ambiguous_names(groups, norm)
        wanted = source.referenced_groups
        cfg = source.config
        for group in groups:
            labels = {norm(group.dn), *(n.lower() for n in group.names if n and n.lower() not in self.ambiguous)}
            if wanted and not labels & wanted:
                continue
            flt = f"(&{cfg.user_filter}(memberOf:{IN_CHAIN}:={escape_filter_chars(group.dn)}))"
            for dn, _ in source.search(conn, cfg.user_base, flt, []):
                self._by_member.setdefault(norm(dn), set()).update(labels)

    def __len__(self) -> int:
        return self._count

    def groups_of(self, member_dn: str) -> frozenset[str]:
        return frozenset(self._by_member.get(self._norm(member_dn), ()))
