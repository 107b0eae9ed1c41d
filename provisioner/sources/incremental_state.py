"""What the incremental LDAP reader keeps between runs.

In the state store, per source (``key``):

* ``key`` -- the base snapshot: user and group records, column by column (one
  JSON array per field, attribute values per attribute), zlib-compressed and
  base64 text inside the JSON value, plus the generation (``gen``) it was written as;
* ``key:delta`` -- every record added or changed since the base, and the keys
  of those gone, in the same encoding: a run that changes 100 entries writes
  these, not 100,000.  When the delta outgrows a tenth of the snapshot the base
  is rewritten and the delta starts empty;
* ``key:mark`` -- small, written last on every save: the generation (base and
  current), the high-water mark, the time of the last full read and of the last
  deletion scan.  If base, delta and mark do not fit together (a crash between
  two writes), the stored state is not used: a full read.

In memory (a :class:`~provisioner.sources.memory.SourceMemory` its owner passes in, per
key): the records of the last generation this owner wrote or read, so a long-running
process (the daemon, whose ``WarmState`` owns the memory) reads only the small marker from
the store and decodes the snapshot on a cold start (or after another process wrote a newer
generation).  Records are frozen values; callers get fresh dictionaries and never change
the cached ones.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provisioner.sources.groups import GroupRecord, UserRecord, norm_dn
from provisioner.sources.ldap_wire import KeyValueStore
from provisioner.sources.memory import Memory, SourceMemory

STATE_VERSION = 3  # 3: dates keep their time of day; unusable lifecycle values kept raw


DELTA_SHARE = 10
"""The base is rewritten when the delta holds more than 1/DELTA_SHARE of the records."""


@dataclass
class Stored:
    gen: str
    base: str
    users: dict[str, UserRecord]
    groups: dict[str, GroupRecord]
    mark: dict[str, Any]
    full_at: str
    scan_at: str
    warm: bool = False
    """True when the records came from this process's memory, not the store."""


class SnapshotStore:
    def __init__(self, store: KeyValueStore, key: str, memory: SourceMemory) -> None:
        self.store = store
        self.key = key
        self._memory = memory

    def invalidate(self) -> None:
        """The next read is a full one (after a partial read, whose gaps must not persist)."""
        self.store.put(self.key + ":mark", {"v": 0})

    def memory(self) -> Memory | None:
        return self._memory.snapshots.get(self.key)

    def load(self) -> Stored | None:
        marker = self.store.get(self.key + ":mark")
        if not isinstance(marker, dict) or marker.get("v") != STATE_VERSION:
            return None
        gen, base = str(marker.get("gen")), str(marker.get("base"))
        meta = (marker["mark"], marker["full_at"], marker["scan_at"])
        mem = self.memory()
        if mem is not None and mem.gen == gen and mem.base == base:
            return Stored(gen, base, dict(mem.users), dict(mem.groups), *meta, warm=True)
        blob = self.store.get(self.key)
        if not isinstance(blob, dict) or blob.get("v") != STATE_VERSION or blob.get("gen") != base:
            return None
        base_users, base_groups = decode(blob["data"], self._memory.dns)
        users, groups = dict(base_users), dict(base_groups)
        if gen != base:
            delta = self.store.get(self.key + ":delta")
            if not isinstance(delta, dict) or delta.get("gen") != gen or delta.get("base") != base:
                return None
            more_users, more_groups = decode(delta["data"], self._memory.dns)
            for k in delta["gone_users"]:
                users.pop(k, None)
            for k in delta["gone_groups"]:
                groups.pop(k, None)
            users.update(more_users)
            groups.update(more_groups)
        self._remember(Memory(gen, users, groups, base, base_users, base_groups))
        return Stored(gen, base, dict(users), dict(groups), *meta)

    def save(
        self,
        users: dict[str, UserRecord],
        groups: dict[str, GroupRecord],
        mark: dict[str, Any],
        full_at: str,
        scan_at: str,
        full: bool = False,
    ) -> None:
        """A new generation: a delta against the base this process holds, or (a full
        read, no base in memory, a large delta) a new base."""
        gen = str(uuid.uuid4())
        mem = self.memory()
        delta = None if full or mem is None else _delta(mem, users, groups)
        if delta is None:
            self.store.put(self.key, {"v": STATE_VERSION, "gen": gen, "data": encode(users, groups)})
            self._remember(Memory(gen, dict(users), dict(groups), gen, dict(users), dict(groups)))
            base = gen
        else:
            assert mem is not None
            base = mem.base
            self.store.put(self.key + ":delta", {"v": STATE_VERSION, "gen": gen, "base": base, **delta})
            self._remember(Memory(gen, dict(users), dict(groups), base, mem.base_users, mem.base_groups))
        self.save_marker(gen, base, mark, full_at, scan_at)

    def save_marker(self, gen: str, base: str, mark: dict[str, Any], full_at: str, scan_at: str) -> None:
        meta = {"v": STATE_VERSION, "gen": gen, "base": base, "mark": mark, "full_at": full_at, "scan_at": scan_at}
        self.store.put(self.key + ":mark", meta)

    def _remember(self, memory: Memory) -> None:
        self._memory.snapshots[self.key] = memory


def _delta(mem: Memory, users: dict[str, UserRecord], groups: dict[str, GroupRecord]) -> dict[str, Any] | None:
    """What changed since the base (records are frozen and shared: identity tells), or
    None when that is too much to keep as a delta."""
    bu, bg = mem.base_users, mem.base_groups
    more_users = {k: r for k, r in users.items() if bu.get(k) is not r}
    more_groups = {k: g for k, g in groups.items() if bg.get(k) is not g}
    gone_users = [k for k in bu if k not in users]
    gone_groups = [k for k in bg if k not in groups]
    size = len(more_users) + len(more_groups) + len(gone_users) + len(gone_groups)
    if size * DELTA_SHARE > max(len(users) + len(groups), 1000):
        return None
    return {"data": encode(more_users, more_groups), "gone_users": gone_users, "gone_groups": gone_groups}


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


def decode(text: str, norm: Callable[[str], str] = norm_dn) -> tuple[dict[str, UserRecord], dict[str, GroupRecord]]:
    data = json.loads(zlib.decompress(base64.b64decode(text)))
    u = data["users"]
    attrs: list[dict[str, tuple[str, ...]]] = [{} for _ in u["dn"]]
    for name, column in u["attrs"].items():
        for row, value in zip(attrs, column, strict=True):
            if value is not None:
                row[name] = (value,) if isinstance(value, str) else tuple(value)
    users = {
        norm(dn): UserRecord(dn, sid, name, bool(enabled), a, tuple(problems or ()))
        for dn, sid, name, enabled, a, problems in zip(
            u["dn"], u["sid"], u["name"], u["enabled"], attrs, u["problems"], strict=True
        )
    }
    g = data["groups"]
    groups = {
        norm(dn): GroupRecord(dn, tuple(names), tuple(members))
        for dn, names, members in zip(g["dn"], g["names"], g["members"], strict=True)
    }
    return users, groups
