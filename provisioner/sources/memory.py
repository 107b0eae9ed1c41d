"""What a source reader may keep in memory between reads, as one explicit object.

The daemon owns one :class:`SourceMemory` (inside its ``WarmState``, engine/warm.py)
and passes it into every read; a CLI run's read gets a fresh one, which serves
that read only.  Nothing here is a process global: dropping the object drops
everything it kept.

- per incremental source key, the records of the last stored generation this
  owner wrote or read (:class:`Memory`, sources/incremental_state.py), so a warm
  process reads only the small marker from the state store;
- normalised DNs (:class:`~provisioner.sources.groups.DnNames`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner.sources.groups import DnNames, GroupRecord, UserRecord


@dataclass
class Memory:
    """One stored generation in memory, plus what the reader derived from it."""

    gen: str
    users: dict[str, UserRecord]
    groups: dict[str, GroupRecord]
    base: str
    base_users: dict[str, UserRecord]
    base_groups: dict[str, GroupRecord]
    derived: dict[str, Any] = field(default_factory=dict)


class SourceMemory:
    """Owned by the daemon (one per process) or by one read; see the module docstring."""

    def __init__(self) -> None:
        self.snapshots: dict[str, Memory] = {}
        self.dns = DnNames()

    def forget(self) -> None:
        """A cold start: nothing is served from memory any more."""
        self.snapshots.clear()
