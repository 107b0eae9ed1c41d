"""What the incremental LDAP reader keeps between runs.

In the state store, per source (``key``):

* ``key`` -- the snapshot: user and group records, column by column (one JSON
  array per field, attribute values per attribute), zlib-compressed and base64
  text inside the JSON value, plus the generation (``gen``) it was written as;
* ``key:mark`` -- small and rewritten on runs that change nothing else: the
  generation, the high-water mark, the time of the last full read and of the
  last deletion scan.

In memory (per store object, per key): the records of the last generation this
process wrote or read, so a long-running process (the daemon) reads only the
small marker from the store and decodes the snapshot on a cold start (or after
another process wrote a newer generation).  Records are frozen values; callers
get fresh dictionaries and never change the cached ones.
"""

from __future__ import annotations

import base64
import json
import uuid
import weakref
import zlib
from dataclasses import dataclass, field
from typing import Any

from provisioner.sources.groups import GroupRecord, UserRecord, norm_dn
from provisioner.sources.ldap_wire import KeyValueStore

STATE_VERSION = 2


@dataclass
class Stored:
    gen: str
    users: dict[str, UserRecord]
    groups: dict[str, GroupRecord]
    mark: dict[str, Any]
    full_at: str
    scan_at: str
    warm: bool = False
    """True when the records came from this process's memory, not the store."""


@dataclass
class Memory:
    """Per-process copy of one stored generation, plus what the reader derived from it."""

    gen: str
    users: dict[str, UserRecord]
    groups: dict[str, GroupRecord]
    derived: dict[str, Any] = field(default_factory=dict)


_MEMORY: weakref.WeakKeyDictionary[Any, dict[str, Memory]] = weakref.WeakKeyDictionary()


def _memory_of(store: KeyValueStore) -> dict[str, Memory] | None:
    try:
        return _MEMORY.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced or hashed: no memory
        return None


def forget(store: KeyValueStore) -> None:
    """Drop this process's copy (tests: a cold start)."""
    try:
        _MEMORY.pop(store, None)
    except TypeError:
        return


class SnapshotStore:
    def __init__(self, store: KeyValueStore, key: str) -> None:
        self.store = store
        self.key = key

    def memory(self) -> Memory | None:
        mem = _memory_of(self.store)
        return mem.get(self.key) if mem is not None else None

    def load(self) -> Stored | None:
        marker = self.store.get(self.key + ":mark")
        mem = self.memory()
        if (
            isinstance(marker, dict)
            and marker.get("v") == STATE_VERSION
            and mem is not None
            and marker.get("gen") == mem.gen
        ):
            return Stored(
                mem.gen, dict(mem.users), dict(mem.groups), marker["mark"], marker["full_at"], marker["scan_at"], True
            )
        blob = self.store.get(self.key)
        if not isinstance(blob, dict) or blob.get("v") != STATE_VERSION:
            return None
        meta = marker if isinstance(marker, dict) and marker.get("gen") == blob.get("gen") else blob
        users, groups = decode(blob["data"])
        self._remember(blob["gen"], users, groups)
        return Stored(blob["gen"], dict(users), dict(groups), meta["mark"], meta["full_at"], meta["scan_at"])

    def save(
        self,
        users: dict[str, UserRecord],
        groups: dict[str, GroupRecord],
        mark: dict[str, Any],
        full_at: str,
        scan_at: str,
    ) -> None:
        gen = str(uuid.uuid4())
        meta = {"v": STATE_VERSION, "gen": gen, "mark": mark, "full_at": full_at, "scan_at": scan_at}
        self.store.put(self.key, {**meta, "data": encode(users, groups)})
        self.store.put(self.key + ":mark", meta)
        self._remember(gen, dict(users), dict(groups))

    def save_marker(self, gen: str, mark: dict[str, Any], full_at: str, scan_at: str) -> None:
        meta = {"v": STATE_VERSION, "gen": gen, "mark": mark, "full_at": full_at, "scan_at": scan_at}
        self.store.put(self.key + ":mark", meta)

    def _remember(self, gen: str, users: dict[str, UserRecord], groups: dict[str, GroupRecord]) -> None:
        mem = _memory_of(self.store)
        if mem is not None:
            mem[self.key] = Memory(gen, users, groups)


# ---- column-oriented encoding


def encode(users: dict[str, UserRecord], groups: dict[str, GroupRecord]) -> str:
    recs = list(users.values())
    names = sorted({a for r in recs for a in r.attributes})
    data = {
        "users": {
            "dn": [r.dn for r in recs],
            "sid": [r.stable_id for r in recs],
            "name": [r.username for r in recs],
            "enabled": [1 if r.enabled else 0 for r in recs],
            "problems": [list(r.problems) or None for r in recs],
            "attrs": {a: [_values(r.attributes.get(a)) for r in recs] for a in names},
        },
        "groups": {
            "dn": [g.dn for g in groups.values()],
            "names": [list(g.names) for g in groups.values()],
            "members": [list(g.members) for g in groups.values()],
        },
    }
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(zlib.compress(raw, 1)).decode("ascii")


def _values(values: tuple[str, ...] | None) -> Any:
    if values is None:
        return None
    return values[0] if len(values) == 1 else list(values)


def decode(text: str) -> tuple[dict[str, UserRecord], dict[str, GroupRecord]]:
    data = json.loads(zlib.decompress(base64.b64decode(text)))
    u = data["users"]
    attrs: list[dict[str, tuple[str, ...]]] = [{} for _ in u["dn"]]
    for name, column in u["attrs"].items():
        for row, value in zip(attrs, column, strict=True):
            if value is not None:
                row[name] = (value,) if isinstance(value, str) else tuple(value)
    users = {
        norm_dn(dn): UserRecord(dn, sid, name, bool(enabled), a, tuple(problems or ()))
        for dn, sid, name, enabled, a, problems in zip(
            u["dn"], u["sid"], u["name"], u["enabled"], attrs, u["problems"], strict=True
        )
    }
    g = data["groups"]
    groups = {
        norm_dn(dn): GroupRecord(dn, tuple(names), tuple(members))
        for dn, names, members in zip(g["dn"], g["names"], g["members"], strict=True)
    }
    return users, groups
