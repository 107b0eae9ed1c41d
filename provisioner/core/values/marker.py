"""The ownership marker provisioner writes as a role's COMMENT.

Format: ``provisioner:managed {"id": ..., "kind": ..., "source": ..., "instance": ...,
"granted": [...]}`` (JSON after a fixed prefix; ``instance`` and ``granted`` -- the
membership ledger of a login role -- absent in markers of older versions).  A role without this prefix is never changed.
"""

from __future__ import annotations

import json
from typing import Any

from provisioner.core.values.model import Marker

PREFIX = "provisioner:managed "
_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


def encode(marker: Marker) -> str:
    return PREFIX + json.dumps(marker.to_json(), sort_keys=True, separators=(",", ":"))


def parse(comment: str | None, shared: dict[Any, Any] | None = None) -> Marker | None:
    """``shared``: see :meth:`Marker.from_json`."""
    if not comment or not comment.startswith(PREFIX):
        return None
    # read once per role per inspect: one decoder, kinds by value; accepts exactly
    # what json.loads accepts (JSON whitespace around the value)
    start = len(PREFIX)
    while start < len(comment) and comment[start] in _JSON_SPACE:
        start += 1
    try:
        data, end = _DECODER.raw_decode(comment, start)
        if comment[end:].strip(_JSON_SPACE) or not isinstance(data, dict):
            return None
        return Marker.from_json(data, shared)
    except (ValueError, KeyError, TypeError):
        return None
