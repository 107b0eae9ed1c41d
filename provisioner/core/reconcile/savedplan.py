"""A saved plan is an approval, never an instruction.  Pure: no I/O.

``apply --plan`` re-derives the plan from the current sources, rules and catalog;
a saved change is applied only when the current plan contains the same change (same
target, kind, role and parameters).  What is applied is the current plan's change,
so an edited reason, marker or timestamp in the file has no effect; a saved change
the current plan does not contain refuses the whole apply, naming each.

A disable's ``VALID UNTIL`` is the instant of the run that plans it; it is not part
of the comparison (a disable stays a disable, whenever it is applied).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from provisioner.core.values.plan import Change, ChangeKind, Plan


def change_key(target: str, change: Change) -> str:
    params: dict[str, Any] = dict(change.params)
    if change.kind is ChangeKind.ALTER_ROLE and params.get("login") is False:
        params.pop("valid_until", None)
    return json.dumps([target, change.kind.value, change.role, params], sort_keys=True, separators=(",", ":"))


def contained(saved: Plan, current: Plan) -> tuple[Plan, list[str]]:
    """The saved plan with each change replaced by the current plan's equal change, and
    one line per saved change the current plan does not contain (empty: applicable).

    A role's changes are planned on top of each other: a mover's grant was checked for
    segregation of duties, and its ledger written, as if the revokes before it happened.
    So a saved plan that changes a role but leaves out a revocation the current plan makes
    for that role (a file edited down to the grants) is refused too, naming the revocation."""
    now = {change_key(tp.target, c): c for tp in current.targets for c in tp.changes}
    kept = {change_key(tp.target, c) for tp in saved.targets for c in tp.changes}
    changed = {(tp.target, c.role) for tp in saved.targets for c in tp.changes}
    refused: list[str] = [
        f"[{tp.target}] {c.describe()} is left out, but the saved plan changes {c.role} on top of it"
        for tp in current.targets
        for c in tp.changes
        if c.kind in (ChangeKind.REVOKE_MEMBERSHIP, ChangeKind.REVOKE_PRIVILEGE)
        and (tp.target, c.role) in changed
        and change_key(tp.target, c) not in kept
    ]
    targets = []
    for tp in saved.targets:
        changes = []
        for change in tp.changes:
            hit = now.get(change_key(tp.target, change))
            if hit is None:
                why = "; ".join(r.describe() for r in change.reasons) or "no reason given"
                refused.append(f"[{tp.target}] {change.describe()} (saved reason: {why})")
            else:
                changes.append(hit)
        targets.append(replace(tp, changes=tuple(changes)))
    return replace(saved, targets=tuple(targets)), refused
