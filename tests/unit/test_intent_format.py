"""The changes an apply intent lists: each distinct reason once, read back to the same changes
(and intents written in the earlier inline form still read back)."""

from __future__ import annotations

import json

import pytest

from provisioner.core.governance.audit import canonical_text
from provisioner.core.values.intent import intent_changes
from provisioner.core.values.model import Reason
from provisioner.core.values.plan import ChangeKind, make_change
from tests.support.intent import intent_json

TRADING = Reason("people", "department='trading'", (("department", "trading"),))
DESK = Reason("ldap-groups", "from_group='cn=desk,ou=groups'", (("from_group", "cn=desk,ou=groups"),))


def _changes() -> list:  # type: ignore[type-arg]
    marker = {"kind": "user", "id": "u-1", "source": "hr", "instance": "i", "granted": ["p_readers"]}
    out = [make_change(ChangeKind.CREATE_ROLE, "p_alice", [Reason("lifecycle:joiner", "new identity 'alice'")],
                       after={"exists": True, "login": True}, role_kind="user", login=True, marker=marker)]
    for member in ("p_alice", "p_bob", "p_carol"):
        out.append(make_change(ChangeKind.GRANT_MEMBERSHIP, member, [TRADING], before={"member": False},
                               after={"member": True}, group="p_readers"))
        out.append(make_change(ChangeKind.GRANT_MEMBERSHIP, member, [TRADING, DESK], before={"member": False},
                               after={"member": True}, group="p_grp_desk"))
    out.append(make_change(ChangeKind.REVOKE_MEMBERSHIP, "p_dave", [], before={"member": True},
                           after={"member": False}, group="p_readers"))
    return out


def test_each_reason_once_and_the_same_changes_back() -> None:
    changes = _changes()
    after = json.loads(canonical_text(intent_json(changes)))  # as stored and read back
    assert len(after["reasons"]) == 3  # the joiner's, TRADING, DESK: not one per change
    assert [c["reasons"] for c in after["changes"]][1:3] == [[1], [1, 2]]
    assert after["changes"][-1]["reasons"] == []
    assert all("summary" not in c for c in after["changes"])
    assert intent_changes(after) == changes


def test_smaller_than_the_inline_form() -> None:
    changes = _changes() * 50
    compact = len(canonical_text(intent_json(changes)))
    inline = len(canonical_text({"changes": [c.to_json() for c in changes]}))
    assert compact < inline * 0.6, (compact, inline)


def test_intents_in_the_inline_form_read_back() -> None:
    changes = _changes()
    assert intent_changes({"changes": [c.to_json() for c in changes]}) == changes
    assert intent_changes({}) == []


@pytest.mark.parametrize("refs", [[3], [-1], ["0"], [True], [0.0]])
def test_a_reference_outside_the_table_is_named(refs: list) -> None:  # type: ignore[type-arg]
    after = json.loads(canonical_text(intent_json(_changes())))
    after["changes"][2]["reasons"] = refs
    with pytest.raises(ValueError, match=r"apply_intent seq 9: change 2 names reasons .* table of 3"):
        intent_changes(after, "apply_intent seq 9")
