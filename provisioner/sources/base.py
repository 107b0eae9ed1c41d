"""The source contract: read every identity in one complete pass."""

from __future__ import annotations

from typing import Protocol

from provisioner.core.values.model import SourceSnapshot


class Source(Protocol):
    name: str

    def read(self) -> SourceSnapshot:
        """Return a complete snapshot or raise a :class:`provisioner.errors.SourceError`.

        Never return partial data: a truncated search, a failed page or an
        unreadable group is an error, not an empty result.
        """
        ...

    def close(self) -> None: ...
