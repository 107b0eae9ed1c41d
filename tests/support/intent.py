"""The compact intent form (provisioner/core/values/intent.py) built as a dict: the oracle the
engine's composed intent text is compared with (tests/audit/test_record_text.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provisioner.core.values.model import Reason
from provisioner.core.values.plan import Change


def intent_json(changes: Sequence[Change]) -> dict[str, Any]:
    """``after`` of an intent record, as a dict (the engine composes its canonical text instead)."""
    table: dict[Reason, int] = {}
    listed = []
    for change in changes:
        data = change.to_json()
        listed.append({
            "kind": data["kind"],
            "role": data["role"],
            "params": data["params"],
            "before": data["before"],
            "after": data["after"],
            "reasons": [table.setdefault(r, len(table)) for r in change.reasons],
        })
    return {"changes": listed, "reasons": [r.to_json() for r in table]}
