"""The ownership marker provisioner writes as a role's COMMENT.

Format: ``provisioner:managed {"id": ..., "kind": ..., "source": ...}`` (JSON
after a fixed prefix).  A role without this prefix is never changed.
"""

from __future__ import annotations

import json

from provisioner.core.model import Marker, RoleKind

PREFIX = "provisioner:managed "
_DECODER = json.JSONDecoder()
_KINDS = {kind.value: kind for kind in RoleKind}
_JSON_SPACE = " \t\n\r"


def encode(marker: Marker) -> str:
    return PREFIX + json.dumps(marker.to_json(), sort_keys=True, separators=(",", ":"))


def parse(comment: str | None) -> Marker | None:
    if not comment or not comment.startswith(PREFIX):
        return None
    # read once per role per inspect: one decoder, kinds by value; accepts exactly
    # what json.loads accepts (JSON whitespace around the value)
    start = len(PREFIX)
    while start < len(comment) and comment[start] in _JSON_SPACE:
        start += 1
    try:
        data, end = _DECODER.raw_decode(comment, start)
        kind = _KINDS.get(data["kind"])
    except (ValueError, KeyError, TypeError):
        return None
    if kind is None or comment[end:].strip(_JSON_SPACE):
        return None
    sid = data.get("id")
    src = data.get("source")
    return Marker(kind, str(sid) if sid is not None else None, str(src) if src is not None else None)
