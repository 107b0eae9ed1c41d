"""The canonical text of audit records, composed from the canonical text of their parts.

A record is hashed and stored as its canonical JSON: sorted keys, no spaces
(:func:`canonical_text`).  The canonical text of a mapping is ``{"k":<text of v>,...}`` in
sorted key order, and the encoder gives a value inside a record the same text as it gives
that value alone.  So a record can be written part by part, and a part that many records
share encoded once: the run's actor and trigger in every record, and, in a first sync's
hundreds of thousands of ``change_applied`` records, a rule's reasons, a group's
parameters and the ``before``/``after`` of every membership grant.

:class:`Canonical` is such a part: a JSON value held as its canonical text, written into a
record as it is.  :class:`ChangeTexts` makes the parts of a transaction's changes (the intent
that lists them) and their ``change_applied`` records; :class:`RecordText` composes any event's
record around its time (``AuditEvent.record``), :func:`split_at` a content dict's.  What is
composed equals :func:`canonical_text` of the record's content exactly -- ``audit verify``
re-encodes every stored record and compares hashes -- and ``tests/audit/test_record_text.py``
checks that for every kind of part.

Pure: no I/O.  A :class:`ChangeTexts` memoises by identity and keeps each object it
memoises alive, so an address cannot be reused while its entry exists; it lives for one
transaction's records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.core.values.model import Reason
from provisioner.core.values.plan import Change

_ENCODE: Callable[[Any], str] = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode
"""``json.dumps`` with these options makes this very encoder (stateless) for every call."""


def canonical_text(content: Mapping[str, Any]) -> str:
    """The record as the chain hashes it (and as the store keeps it): sorted keys, no spaces."""
    return _ENCODE(content)


Record = tuple[Any, Any, Any, Any, Any, Any, str, str]
"""An audit record ready for the chain: its run_id, kind, actor, target and role (the
searchable columns), its ``at`` as written, and its canonical text before and after that
``at`` (``AuditEvent.record``; :meth:`ChangeTexts.records` for a transaction's changes)."""


@dataclass(frozen=True, slots=True)
class Canonical:
    """A JSON value held as its canonical text (a record's ``change``, ``before`` or ``after``)."""

    text: str

    def value(self) -> Any:
        return json.loads(self.text)


def text_of(value: Any) -> str:
    """The canonical text of a record's part: a :class:`Canonical` as it is, a mapping as a dict."""
    if isinstance(value, Canonical):
        return value.text
    if isinstance(value, Mapping) and type(value) is not dict:
        value = dict(value)
    return _ENCODE(value)


def split_at(content: Mapping[str, Any]) -> tuple[str, str]:
    """The canonical text of ``content`` before and after its ``at`` value (which it must have):
    ``head + text_of(at) + tail`` is :func:`canonical_text` of ``content``."""
    keys = sorted(content)
    i = keys.index("at")
    head = "{" + "".join(f"{_ENCODE(k)}:{text_of(content[k])}," for k in keys[:i]) + '"at":'
    tail = "".join(f",{_ENCODE(k)}:{text_of(content[k])}" for k in keys[i + 1 :]) + "}"
    return head, tail


class RecordText:
    """Composes the text of a batch of records (one append), each header string encoded once."""

    __slots__ = ("_strings",)

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}

    def string(self, value: str | None) -> str:
        if value is None:
            return "null"
        text = self._strings.get(value)
        if text is None:
            text = self._strings[value] = _ENCODE(value)
        return text

    def around_at(
        self,
        actor: str,
        after: Any,
        before: Any,
        change: Any,
        kind: str,
        reason: str,
        role: str | None,
        run_id: str,
        target: str | None,
        trigger: str,
    ) -> tuple[str, str]:
        """The text of an ``AuditEvent.content()`` (its keys, sorted) before and after ``at``."""
        s = self.string
        return _around_at(
            s(actor), text_of(after), text_of(before), "null" if change is None else text_of(change), s(kind),
            s(reason), "null" if role is None else _ENCODE(role), s(run_id), s(target), s(trigger),
        )


def _around_at(
    actor: str, after: str, before: str, change: str, kind: str, reason: str, role: str, run_id: str, target: str,
    trigger: str,
) -> tuple[str, str]:
    """A record's canonical text before and after its ``at`` value, from the canonical texts of its
    other values: the one place that knows a record's keys and their sorted order."""
    head = f'{{"actor":{actor},"after":{after},"at":'
    tail = (
        f',"before":{before},"change":{change},"kind":{kind},"reason":{reason},"role":{role}'
        f',"run_id":{run_id},"target":{target},"trigger":{trigger}}}'
    )
    return head, tail


class ChangeTexts:
    """The canonical text of one transaction's changes, for their audit records.

    :meth:`change` is ``Change.to_json()``'s text, :meth:`pairs` that of a change's ``before``
    or ``after`` as a dict, :meth:`intent` that of the intent record's ``after`` (the compact
    form :mod:`provisioner.core.values.intent` reads back).  Parameters, states and reasons
    are mostly shared objects (one ``(("group", g),)`` per group, one reasons tuple per
    rule), so each is encoded once per object."""

    __slots__ = ("_pairs", "_parts", "_reasons")

    def __init__(self) -> None:
        # one table per kind of part: the empty tuple is both a change's empty params and its empty reasons
        self._pairs: dict[int, tuple[object, str]] = {}
        self._reasons: dict[int, tuple[object, str]] = {}
        self._parts: dict[int, tuple[Change, str, str, str, str, str]] = {}

    def pairs(self, pairs: tuple[tuple[str, Any], ...]) -> str:
        hit = self._pairs.get(id(pairs))
        if hit is None:
            hit = self._pairs[id(pairs)] = (pairs, _ENCODE(dict(pairs)))
        return hit[1]

    def reasons(self, reasons: tuple[Reason, ...]) -> str:
        hit = self._reasons.get(id(reasons))
        if hit is None:
            hit = self._reasons[id(reasons)] = (reasons, _ENCODE([r.to_json() for r in reasons]))
        return hit[1]

    def _of(self, change: Change) -> tuple[Change, str, str, str, str, str]:
        """(change, role, kind, params, before, after) texts; the head of its JSON's keys."""
        parts = self._parts.get(id(change))
        if parts is None:
            parts = self._parts[id(change)] = (
                change,
                _ENCODE(change.role),
                _ENCODE(change.kind.value),
                self.pairs(change.params),
                self.pairs(change.before),
                self.pairs(change.after),
            )
        return parts

    def change(self, change: Change) -> str:
        """The canonical text of ``change.to_json()``."""
        _, role, kind, params, before, after = self._of(change)
        return (
            f'{{"after":{after},"before":{before},"kind":{kind},"params":{params}'
            f',"reasons":{self.reasons(change.reasons)},"role":{role},"summary":{_ENCODE(change.describe())}}}'
        )

    def records(
        self,
        kind: str,
        changes: Iterable[Change],
        reason: Callable[[Change], str],
        at: str,
        run_id: str,
        actor: str,
        trigger: str,
        target: str,
    ) -> list[Record]:
        """The ``kind`` record of each change, as ``AuditEvent(run_id, at, actor, trigger, kind,
        target, change.role, change=change.to_json(), reason=reason(change), before=dict(change.before),
        after=dict(change.after)).record()`` writes it, without the event: a first sync writes
        hundreds of thousands.  ``reason``'s strings are encoded once each."""
        actor_text, kind_text, run_text, target_text, trigger_text = (
            _ENCODE(v) for v in (actor, kind, run_id, target, trigger)
        )
        reasons: dict[str, str] = {}
        out: list[Record] = []
        for change in changes:
            _, role, _, _, before, after = self._of(change)
            why = reason(change)
            why_text = reasons.get(why)
            if why_text is None:
                why_text = reasons[why] = _ENCODE(why)
            head, tail = _around_at(
                actor_text, after, before, self.change(change), kind_text, why_text, role, run_text, target_text,
                trigger_text,
            )
            out.append((run_id, kind, actor, target, change.role, at, head, tail))
        return out

    def intent(self, changes: Sequence[Change]) -> Canonical:
        table: dict[Reason, int] = {}
        lines = []
        for change in changes:
            _, role, kind, params, before, after = self._of(change)
            refs = ",".join(str(table.setdefault(r, len(table))) for r in change.reasons)
            lines.append(
                f'{{"after":{after},"before":{before},"kind":{kind},"params":{params},"reasons":[{refs}],"role":{role}}}'
            )
        reasons = _ENCODE([r.to_json() for r in table])
        return Canonical(f'{{"changes":[{",".join(lines)}],"reasons":{reasons}}}')
