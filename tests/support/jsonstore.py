"""A JSON round-tripping key/value store and a comparable view of a snapshot,
for incremental-read tests."""

from __future__ import annotations

import json
from typing import Any

from provisioner.core.values.model import SourceSnapshot
from provisioner.sources.memory import SourceMemory


class JsonStore:
    """In-memory key/value store that round-trips values through JSON like the real one;
    ``memory``: what the process using it keeps between reads (a new store = a new process)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.memory = SourceMemory()

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.data[key]) if key in self.data else default

    def put(self, key: str, value: Any) -> None:
        self.data[key] = json.dumps(value)


def content(snap: SourceSnapshot) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = sorted(
        (i.stable_id, i.username, i.dn, i.enabled, sorted(i.attributes.items()), sorted(i.groups))
        for i in snap.identities
    )
    rows.append(("groups", snap.group_count))
    return rows
