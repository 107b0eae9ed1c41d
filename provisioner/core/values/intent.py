"""The changes of an ``apply_intent`` audit record, written compactly and read back.

An intent lists every change of a transaction before it starts, so that a run interrupted
between the target's commit and its own records can be reconciled (``engine/recovery``).
Each change's own ``change_applied`` record carries its full JSON with its summary and
reasons; the intent needs only what rebuilds the :class:`Change`. A first sync's thousands of
memberships share a few dozen reasons, so the intent keeps each distinct reason once
(``after.reasons``) and a change names its reasons by position in that table; the summary,
which the change's kind, role and parameters determine, is left out.  At 10,000 users this
makes the intents of a first sync 25.5 -> 16.5 MB of the audit store (59,295 changes).

The engine writes an intent's ``after`` as canonical text composed part by part
(``ChangeTexts.intent`` in core/governance/encode.py): ``{"changes": [{"after", "before", "kind",
"params", "reasons": [positions], "role"}, ...], "reasons": [each distinct reason's JSON]}``.
Intents written before (each change with its reasons inline and a summary) read back the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.core.values.plan import Change


def intent_changes(after: Mapping[str, Any], where: str = "intent") -> list[Change]:
    """The changes an intent's ``after`` lists, in either form. ``where`` names the record
    in the error a malformed reason reference raises."""
    table = after.get("reasons")
    out = []
    for n, data in enumerate(after.get("changes") or ()):
        if table is None:  # the inline form
            out.append(Change.from_json(data))
            continue
        refs = data.get("reasons") or ()
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(table) for i in refs):
            raise ValueError(f"{where}: change {n} names reasons {refs!r}, not positions in its table of {len(table)}")
        out.append(Change.from_json({**data, "reasons": [table[i] for i in refs]}))
    return out
