"""Records composed part by part (core/governance/encode.py) are byte for byte the canonical
text of their content: ``audit verify`` re-encodes each stored record and compares hashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.governance.audit import AuditEvent, EventKind, canonical_text
from provisioner.core.governance.encode import Canonical, ChangeTexts, RecordText, split_at, text_of
from provisioner.core.values.intent import intent_changes
from provisioner.core.values.model import Reason
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.support.intent import intent_json

# names and values a directory and a catalog can hold: quotes, backslashes, controls, non-ASCII
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), text)
pairs = st.lists(st.tuples(text, scalar), max_size=4, unique_by=lambda kv: kv[0]).map(lambda kv: tuple(sorted(kv)))
reason = st.builds(Reason, text, text, pairs.map(lambda kv: tuple((k, str(v)) for k, v in kv)))
# every kind's summary reads its own parameters (a grant its group, a rename the old name)
params = st.tuples(pairs, text, text).map(lambda p: tuple(sorted({**dict(p[0]), "group": p[1], "old_name": p[2]}.items())))
change = st.builds(
    Change, st.sampled_from(list(ChangeKind)), text, st.lists(reason, max_size=3).map(tuple), params, pairs, pairs
)


@settings(max_examples=300, deadline=None)
@given(st.lists(change, max_size=8))
def test_changes_and_intents_are_their_canonical_text(changes: list[Change]) -> None:
    texts = ChangeTexts()
    for c in changes:
        assert texts.change(c) == canonical_text(c.to_json())
        assert texts.pairs(c.before) == canonical_text(dict(c.before))
    intent = texts.intent(changes)
    assert intent.text == canonical_text(intent_json(changes))
    assert intent_changes(intent.value()) == changes


@settings(max_examples=200, deadline=None)
@given(change, text, st.one_of(st.none(), text), st.datetimes(timezones=st.just(UTC)))
def test_an_event_with_composed_parts_is_its_content(c: Change, actor: str, target: str | None, at: datetime) -> None:
    texts = ChangeTexts()
    event = AuditEvent(
        "run-1", at, actor, "schedule", EventKind.CHANGE_APPLIED, target=target, role=c.role,
        change=Canonical(texts.change(c)), reason="; ".join(r.describe() for r in c.reasons),
        before=Canonical(texts.pairs(c.before)), after=Canonical(texts.pairs(c.after)),
    )
    head, tail = event.around_at(RecordText())
    content = event.content()
    assert head + text_of(content["at"]) + tail == canonical_text(content)
    assert content["change"] == c.to_json()
    # the engine writes a transaction's change records without making the events
    (record,) = ChangeTexts().records(
        "change_applied", [c], lambda x: event.reason, at.isoformat(), "run-1", actor, "schedule", target or ""
    )
    if target is not None:
        assert record == event.record(RecordText())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(text, st.one_of(scalar, st.dictionaries(text, scalar, max_size=3)), max_size=6), scalar)
def test_any_content_splits_around_its_time(content: dict[str, Any], at: Any) -> None:
    content = {**content, "at": at}
    head, tail = split_at(content)
    assert head + text_of(at) + tail == canonical_text(content)


def test_equal_values_of_different_types_are_not_confused() -> None:
    """The memo is by identity, not by value: ``True == 1 == 1.0`` as dict keys."""
    texts = ChangeTexts()
    a = Change(ChangeKind.ALTER_ROLE, "a", (), (("login", True),))
    b = Change(ChangeKind.ALTER_ROLE, "b", (), (("login", 1),))
    c = Change(ChangeKind.ALTER_ROLE, "c", (), (("login", 1.0),))
    assert [texts.pairs(x.params) for x in (a, b, c)] == ['{"login":true}', '{"login":1}', '{"login":1.0}']
    assert texts.intent([a, b, c]).text == canonical_text(intent_json([a, b, c]))
    # empty reasons and empty states are the same tuple object: "[]" for the one, "{}" for the other
    assert all(texts.change(x) == canonical_text(x.to_json()) for x in (a, b, c))


def test_composed_records_verify_in_the_store(tmp_path: Path) -> None:
    """A batch of change records written as the engine writes them, one stamped back in time
    (the head's time is used instead): the chain verifies and each record reads back as its event."""
    desk = (Reason("desk", "member of 'desk'", (("memberOf", "cn=desk,ou=groups"),)),)
    changes = [
        Change(ChangeKind.GRANT_MEMBERSHIP, f"user_{i}", desk, (("group", "grp_désk"),), (("member", False),),
               (("member", True),))
        for i in range(50)
    ]
    texts = ChangeTexts()
    now = datetime.now(UTC)
    intent = AuditEvent("r1", now, "svc", "schedule", EventKind.APPLY_INTENT, target="pg", after=texts.intent(changes))
    applied = [
        AuditEvent("r1", now - timedelta(seconds=i % 2), "svc", "schedule", EventKind.CHANGE_APPLIED, target="pg",
                   role=c.role, change=Canonical(texts.change(c)), reason="desk: member of 'desk'",
                   before=Canonical(texts.pairs(c.before)), after=Canonical(texts.pairs(c.after)))
        for i, c in enumerate(changes[:25])
    ]
    # the rest as the engine writes them: records without events, stamped a second early
    late = (now - timedelta(seconds=1)).isoformat()
    records = texts.records("change_applied", changes[25:], lambda c: "desk: member of 'desk'", late, "r1", "svc",
                            "schedule", "pg")
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.append([intent])
        written = store.append([*applied, *records])
        assert all(w.at == now.isoformat() for w in written), "never earlier than the head"
        report = verify_chain(store.audit, [], None)
        assert report.ok, report
        rows = list(store.iter_audit("r1"))
        assert [r.content["role"] for r in rows[1:]] == [c.role for c in changes]
        assert rows[1].content["change"] == changes[0].to_json()
        assert rows[1].content["after"] == {"member": True}
        assert rows[-1].content["change"] == changes[-1].to_json()
        assert rows[-1].content["reason"] == "desk: member of 'desk'" and rows[-1].content["at"] == now.isoformat()
        assert intent_changes(rows[0].content["after"]) == changes
        assert json.loads(canonical_text(rows[2].content)) == rows[2].content
    finally:
        store.close()
