"""Incremental LDAP reads: after a full read, ask only for what changed.

The state store keeps, per source, a compact snapshot (mapped user records and
group records) and a high-water mark:

* OpenLDAP: the newest ``modifyTimestamp`` seen; later runs search
  ``(modifyTimestamp>=mark - overlap)`` (1 s granularity, clock skew between
  writes in flight: the overlap re-reads a few seconds, duplicates replace their stored copy).
* Active Directory: ``highestCommittedUSN`` of the rootDSE taken *before* the
  read; later runs search ``(uSNChanged>=mark+1)`` on the same domain controller
  (``dsServiceName`` and its ``invocationId`` are stored; another DC, or a
  restored one, means a full read).

Deletions (and entries that no longer match the filter) are found by an
id-only scan (DNs, no attributes), every run or every ``deletion_scan_every``
seconds.  Changed groups are re-read (with range
retrieval) and nested membership is recomputed from the stored groups.  A full
read runs every ``full_read_every`` seconds and whenever the mark cannot be
trusted: no state, another DC, or another configuration/attribute list (the
state key carries a digest of both).  Both paths build the snapshot with the
same function from the same records.  What is kept, in the store and in
memory, is in :mod:`provisioner.sources.incremental_state`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import ldap3
import structlog

from provisioner.config import LdapSourceConfig
from provisioner.core.values.model import SourceSnapshot
from provisioner.sources import incremental_moves as moves
from provisioner.sources.attributes import AttributeMap
from provisioner.sources.groups import GroupGraph, GroupRecord, Membership, UserRecord, assemble, norm_dn, user_record
from provisioner.sources.incremental_state import STATE_VERSION, SnapshotStore, Stored
from provisioner.sources.ldap_wire import Entry, KeyValueStore
from provisioner.sources.memory import SourceMemory

log = structlog.get_logger(__name__)


class LdapReader(Protocol):
    """What an incremental read uses of its source (:class:`provisioner.sources.ldap.LdapSource`)."""

    config: LdapSourceConfig
    name: str
    referenced_groups: frozenset[str]
    amap: AttributeMap

    def user_attrs(self) -> list[str]: ...

    def search(self, conn: ldap3.Connection, base: str, search_filter: str, attrs: list[str]) -> Iterator[Entry]: ...

    def check(self, result: dict[str, Any] | None, base: str) -> None: ...

    def read_groups(
        self,
        conn: ldap3.Connection,
        extra_filter: str = "",
        extra_attrs: list[str] | None = None,
        seen: Callable[[dict[str, list[bytes]]], None] | None = None,
    ) -> list[GroupRecord]: ...

    def membership(self, conn: ldap3.Connection, groups: list[GroupRecord]) -> Membership: ...

    def warnings(self) -> list[str]: ...

OVERLAP = timedelta(seconds=5)
_GT = "%Y%m%d%H%M%SZ"


def _gt(value: bytes) -> str:
    """GeneralizedTime ``20240102030405Z`` (fractions dropped) -> sortable text."""
    text = value.decode("ascii", "replace").strip()
    return text[:14] + "Z" if len(text) >= 14 else text


class IncrementalReader:
    overlap = OVERLAP
    """How far before the OpenLDAP high-water mark a changed-entries search starts."""

    def __init__(self, source: LdapReader, store: KeyValueStore, memory: SourceMemory | None = None) -> None:
        """``memory``: what the owner (the daemon's warm state) keeps between reads; a fresh
        one (this read only) when None."""
        self.source = source
        self.store = store
        self.memory = memory if memory is not None else SourceMemory()
        self.norm = self.memory.dns
        self.ad = source.config.preset == "ad"
        self.key = f"ldap-source:{source.name}:{self.digest()[:16]}"
        self.saved = SnapshotStore(store, self.key, self.memory)
        self.stats: dict[str, Any] = {}

    # ---- identity of what is stored

    def digest(self) -> str:
        cfg = self.source.config
        volatile = {
            "page_size", "timeout", "full_read_every", "deletion_scan_every", "incremental", "bind_password", "name"
        }
        data = {
            "v": STATE_VERSION,
            "config": cfg.model_dump(mode="json", exclude=volatile),
            "fields": sorted(self.source.amap.fields.items()),
            "user_attrs": self.source.user_attrs(),
            "groups": sorted(self.source.referenced_groups),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    # ---- entry point

    def read(self, conn: ldap3.Connection) -> SourceSnapshot:
        now = datetime.now(UTC)
        server = self._server_mark(conn) if self.ad else self._context_mark(conn)
        state = self.saved.load()
        why = self._why_full(state, server, now)
        if why:
            log.info("ldap full read", source=self.source.name, reason=why)
            self.stats = {"mode": "full", "reason": why}
            return self._full(conn, server, now)
        assert state is not None
        self.stats = {"mode": "incremental", "warm": state.warm}
        return self._incremental(conn, state, server, now)

    def _why_full(self, state: Stored | None, server: dict[str, Any], now: datetime) -> str:
        if state is None:
            return "no stored snapshot"
        every = self.source.config.full_read_every
        if every <= 0:
            return "full_read_every = 0"
        if now - datetime.fromisoformat(state.full_at) >= timedelta(seconds=every):
            return "scheduled full read"
        mark = state.mark or {}
        if self.ad:
            if mark.get("dc") != server.get("dc") or mark.get("invocation") != server.get("invocation"):
                return "domain controller changed"
            if int(server.get("usn", 0)) < int(mark.get("usn", 0)):
                return "highestCommittedUSN went back"
        elif not mark.get("ts"):
            return "no high-water mark"
        elif not mark.get("entrycsn") and str(mark["ts"]) > now.strftime(_GT):
            return "high-water mark in the future"  # stored before it was capped (_capped)
        return ""

    # ---- server marks

    def _server_mark(self, conn: ldap3.Connection) -> dict[str, Any]:
        conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["highestCommittedUSN", "dsServiceName"])
        self.source.check(conn.result, "rootDSE")
        raw = (conn.response or [{}])[0].get("raw_attributes", {})
        usn = int(raw.get("highestcommittedusn", [b"0"])[0])
        dc = raw.get("dsservicename", [b""])[0].decode("utf-8", "replace")
        invocation = ""
        if dc:
            conn.search(dc, "(objectClass=*)", ldap3.BASE, attributes=["invocationId"])
            if conn.result and conn.result.get("result") == 0 and conn.response:
                values = conn.response[0].get("raw_attributes", {}).get("invocationid", [b""])
                invocation = values[0].hex()
        return {"usn": usn, "dc": dc, "invocation": invocation}

    def _context_mark(self, conn: ldap3.Connection) -> dict[str, Any]:
        """OpenLDAP: the ``contextCSN`` values of the databases holding the user and group
        bases (syncprov keeps them and moves them on every write, deletions included);
        ``{}`` when a base's naming context has none or cannot be read (never quiet then)."""
        cfg = self.source.config
        conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["namingContexts"])
        if not conn.result or conn.result.get("result") != 0 or not conn.response:
            return {}
        raw = conn.response[0].get("raw_attributes", {})
        contexts = [v.decode("utf-8", "replace") for v in raw.get("namingcontexts", [])]
        csn: dict[str, list[str]] = {}
        for base in filter(None, (cfg.user_base, cfg.group_base)):
            nc = _naming_context(base, contexts)
            if nc is None:
                return {}
            if nc not in csn:
                conn.search(nc, "(objectClass=*)", ldap3.BASE, attributes=["contextCSN"])
                ok = conn.result and conn.result.get("result") == 0 and conn.response
                values = conn.response[0].get("raw_attributes", {}).get("contextcsn", []) if ok else []
                if not values:
                    return {}
                csn[nc] = sorted(v.decode("ascii", "replace") for v in values)
        return {"csn": csn}

    def _quiet(self, old: dict[str, Any], server: dict[str, Any], key: str) -> bool:
        """Nothing at all was written to the directory since ``old[key]`` was taken."""
        now = server.get("usn") if self.ad else server.get("csn")
        return bool(now) and now == old.get(key)

    # ---- full read

    def _full(self, conn: ldap3.Connection, server: dict[str, Any], now: datetime) -> SourceSnapshot:
        src, cfg = self.source, self.source.config
        newest: list[str] = [""]
        extra = [] if self.ad else ["modifyTimestamp", "entryCSN"]
        csn_readable = [not self.ad]

        def seen(raw: dict[str, list[bytes]]) -> None:
            for v in raw.get("modifytimestamp", ()):
                newest[0] = max(newest[0], _gt(v))
            if not raw.get("entrycsn"):
                csn_readable[0] = False

        users: dict[str, UserRecord] = {}
        shared: dict[Any, Any] = {}  # equal attribute values: one object
        for dn, raw in src.search(conn, cfg.user_base, cfg.user_filter, src.user_attrs() + extra):
            seen(raw)
            users[self.norm(dn)] = user_record(dn, raw, src.amap, shared)
        groups = {self.norm(g.dn): g for g in src.read_groups(conn, extra_attrs=extra, seen=seen)}
        mark = _mark(self.ad, server, _capped(newest[0], now), scanned=True, entry_csn=csn_readable[0] and bool(users))
        self.saved.save(users, groups, mark, now.isoformat(), now.isoformat(), full=True)
        return self._assemble(conn, users, groups, {})

    # ---- incremental read

    def _incremental(
        self, conn: ldap3.Connection, state: Stored, server: dict[str, Any], now: datetime
    ) -> SourceSnapshot:
        src, cfg = self.source, self.source.config
        users, groups = state.users, state.groups  # fresh dictionaries over shared frozen records
        old = state.mark
        if self.ad:
            changed = f"(uSNChanged>={int(old['usn']) + 1})"
            extra: list[str] = []
        elif old.get("entrycsn") and _csn_floor(old):
            changed = f"(entryCSN>={_csn_floor(old)})"
            extra = ["modifyTimestamp"]
        else:
            since = datetime.strptime(old["ts"], _GT).replace(tzinfo=UTC) - self.overlap
            changed = f"(modifyTimestamp>={since.strftime(_GT)})"
            extra = ["modifyTimestamp"]
        newest = [old.get("ts", "")]

        def seen(raw: dict[str, list[bytes]]) -> None:
            for v in raw.get("modifytimestamp", ()):
                newest[0] = max(newest[0], _gt(v))

        quiet = self._quiet(old, server, "usn" if self.ad else "csn")
        n_users = n_read = 0  # re-read entries that differ from the stored copy (the overlap re-reads a few)
        changed_groups: list[GroupRecord] = []
        fresh: set[str] = set()  # users read this run
        relinked: set[str] = set()  # DNs that now name another entry: new, or another stable id
        new_groups: list[GroupRecord] = []  # groups read at a DN not stored before
        if not quiet:  # a quiet directory has no changed entry to ask for
            user_filter = f"(&{cfg.user_filter}{changed})"
            shared: dict[Any, Any] = {}
            for dn, raw in src.search(conn, cfg.user_base, user_filter, src.user_attrs() + extra):
                seen(raw)
                n_read += 1
                key, rec = self.norm(dn), user_record(dn, raw, src.amap, shared)
                fresh.add(key)
                prev = users.get(key)
                if prev != rec:
                    if prev is None or prev.stable_id != rec.stable_id:
                        relinked.add(key)
                    users[key] = rec
                    n_users += 1
            for g in src.read_groups(conn, changed, extra, seen):
                key = self.norm(g.dn)
                if groups.get(key) != g:
                    new_groups += [] if key in groups else [g]
                    groups[key] = g
                    changed_groups.append(g)
        stale_u = moves.stale_users(users, relinked, fresh)
        stale_g = moves.stale_groups(groups, new_groups, self.norm)
        every = cfg.deletion_scan_every
        due = every <= 0 or now - datetime.fromisoformat(state.scan_at) >= timedelta(seconds=every)
        scan = due and not self._quiet(old, server, "scan")  # nothing written since the last scan: none gone
        scan = scan or len(stale_u) + len(stale_g) > moves.LOOKUPS  # a reorganisation: one scan settles it
        gone_users = gone_groups = 0
        if not scan and (stale_u or stale_g):  # moved entries (incremental_moves.py): a base search each
            gone = moves.drop_moved(conn, src.check, users, stale_u, cfg.user_filter)
            n_users += len(gone)
            relinked |= gone | moves.drop_moved(conn, src.check, groups, stale_g, cfg.group_filter)
        if scan:
            present = self._present(conn, cfg.user_base, cfg.user_filter)
            relinked.update(k for k in users if k not in present)  # the groups listing them: see relist
            gone_users = _gone(users, present)
            if cfg.group_base:
                present = self._present(conn, cfg.group_base, cfg.group_filter)
                relinked.update(k for k in groups if k not in present)
                gone_groups = _gone(groups, present)
        if self.ad and relinked:
            moves.relist(conn, src.read_groups, self.norm, groups, relinked, changed_groups)
        scan_at = now.isoformat() if scan else state.scan_at
        self.stats.update(
            changed_filter=changed,
            users_read=n_read,
            users_changed=n_users,
            groups_changed=len(changed_groups),
            users_gone=gone_users,
            groups_gone=gone_groups,
            deletion_scan=scan,
            quiet=quiet,
        )
        entry_csn = bool(old.get("entrycsn"))
        mark = _mark(self.ad, server, _capped(newest[0], now), scanned=scan, before=old, entry_csn=entry_csn)
        groups_same = not changed_groups and not gone_groups
        memory = self.saved.memory()
        derived = memory.derived if memory is not None and memory.gen == state.gen else {}
        if n_users or changed_groups or gone_users or gone_groups:
            self.saved.save(users, groups, mark, state.full_at, scan_at)
        elif mark != old or scan_at != state.scan_at:
            self.saved.save_marker(state.gen, state.base, mark, state.full_at, scan_at)
        unchanged = groups_same and not n_users and not gone_users
        return self._assemble(conn, users, groups, derived, unchanged, regroup=not groups_same)

    def _present(self, conn: ldap3.Connection, base: str, flt: str) -> set[str]:
        return {self.norm(dn) for dn, _ in self.source.search(conn, base, flt, [])}

    def _assemble(
        self,
        conn: ldap3.Connection,
        users: dict[str, UserRecord],
        groups: dict[str, GroupRecord],
        before: dict[str, Any],
        unchanged: bool = False,
        regroup: bool = False,
    ) -> SourceSnapshot:
        """The snapshot; in a warm process, reuse what the last run derived: the whole
        snapshot when nothing changed, else the identities of unchanged users -- after a
        group change (``regroup``) those whose transitive groups are still the same
        (client-side nesting only; in-chain asks the server)."""
        src = self.source
        client = src.config.nested_groups != "in_chain"
        last = before.get("snapshot")
        if client and unchanged and isinstance(last, SourceSnapshot):
            snap = last
        else:
            membership = src.membership(conn, list(groups.values()))
            reuse = before.get("identities") if client else None
            identities: dict[str, Any] = {}
            snap = assemble(src.name, users.values(), membership, src.amap, (), reuse, identities, regroup)
            memory = self.saved.memory()
            if client and isinstance(membership, GroupGraph) and memory is not None:
                memory.derived.update(snapshot=snap, identities=identities)
        return replace(snap, warnings=(*src.warnings(), *snap.warnings), read_at=datetime.now(UTC))


def _mark(
    ad: bool,
    server: dict[str, Any],
    newest: str,
    *,
    scanned: bool,
    before: dict[str, Any] | None = None,
    entry_csn: bool = False,
) -> dict[str, Any]:
    """The high-water mark to store: AD's server mark, or OpenLDAP's newest modifyTimestamp
    and contextCSN; ``scan``: the server's change counter when the last deletion scan (or
    full read) started, so a later due scan is skipped while nothing was written;
    ``entrycsn``: the full read saw ``entryCSN`` on every entry (the reader may search it)."""
    mark = dict(server) if ad else {"ts": newest, **({"csn": server["csn"]} if server.get("csn") else {})}
    if entry_csn and mark.get("csn"):
        mark["entrycsn"] = True
    counter = server.get("usn") if ad else server.get("csn")
    scan = counter if scanned else (before or {}).get("scan")
    return {**mark, "scan": scan} if scan else mark


def _capped(newest: str, now: datetime) -> str:
    """The newest ``modifyTimestamp`` seen, but never later than this read's start: one entry
    stamped in the future (a server clock stepped back, a provider's clock ahead) would
    otherwise carry the mark past every honest write to come, and the ``modifyTimestamp>=``
    search would miss them (a leaver) until the next full read.  A client clock behind the
    server's only widens the overlap (entries read again compare equal)."""
    return min(newest, now.strftime(_GT)) if newest else newest


def _csn_floor(mark: dict[str, Any]) -> str:
    """The oldest ``contextCSN`` value stored (every naming context, every server id): taken
    before the last read, and never past a write still in flight (slapd's commit CSN), so
    every entry written since carries an ``entryCSN`` at or above it.  Empty: none stored."""
    values = [v for vs in (mark.get("csn") or {}).values() for v in vs]
    floor = min(values, default="")
    return floor if floor and all(c.isalnum() or c in ".#" for c in floor) else ""


def _naming_context(base: str, contexts: list[str]) -> str | None:
    """The longest naming context ``base`` lies in (RDN-wise, case-insensitive)."""
    dn = norm_dn(base)
    inside = [nc for nc in contexts if dn == norm_dn(nc) or dn.endswith("," + norm_dn(nc))]
    return max(inside, key=len) if inside else None


def _gone(stored: dict[str, Any], present: set[str]) -> int:
    missing = [k for k in stored if k not in present]
    for k in missing:
        del stored[k]
    return len(missing)

