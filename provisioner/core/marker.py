"""The ownership marker provisioner writes as a role's COMMENT.

Format: ``provisioner:managed {"id": ..., "kind": ..., "source": ...}`` (JSON
after a fixed prefix).  A role without this prefix is never changed.
"""

from __future__ import annotations

import json

from provisioner.core.model import Marker, RoleKind

PREFIX = "provisioner:managed "


def encode(marker: Marker) -> str:
    return PREFIX + json.dumps(marker.to_json(), sort_keys=True, separators=(",", ":"))


def parse(comment: str | None) -> Marker | None:
    if not comment or not comment.startswith(PREFIX):
        return None
    try:
        data = json.loads(comment[len(PREFIX) :])
        kind = RoleKind(data["kind"])
    except (ValueError, KeyError, TypeError):
        return None
    sid = data.get("id")
    src = data.get("source")
    return Marker(kind, str(sid) if sid is not None else None, str(src) if src is not None else None)
