"""Declarative conditions over identity attributes and group membership.

A condition is data, never code: ``all`` / ``any`` / ``not`` over leaves that
test one attribute (``equals``, ``one_of``, ``regex``, ``present``,
``before``, ``after``) or membership in a group.  Evaluation returns the
evidence (attribute, value) that made it true, so every grant can say why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from provisioner.core.values.model import Identity

Evidence = tuple[tuple[str, str], ...]

_RELATIVE = re.compile(r"^today(?:([+-])(\d+)d)?$")


@dataclass(frozen=True, slots=True)
class AttrCondition:
    attr: str
    op: str
    value: Any
    case_sensitive: bool = False


@dataclass(frozen=True, slots=True)
class GroupCondition:
    group: str


@dataclass(frozen=True, slots=True)
class AllCondition:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyCondition:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class NotCondition:
    item: Condition


Condition = AttrCondition | GroupCondition | AllCondition | AnyCondition | NotCondition

def leaves(cond: Condition) -> Iterator[AttrCondition | GroupCondition]:
    """Every attribute and group test inside ``cond``, in order."""
    if isinstance(cond, AllCondition | AnyCondition):
        for item in cond.items:
            yield from leaves(item)
    elif isinstance(cond, NotCondition):
        yield from leaves(cond.item)
    else:
        yield cond


ATTR_OPS = ("equals", "one_of", "regex", "present", "before", "after")


def group_label(value: str) -> str:
    """A rule's group as the sources label groups: a name lower-cased, a DN (``cn=...,ou=...``)
    lower-cased with the spaces around its separators removed."""
    text = value.strip().lower()
    if "=" not in text or "\\" in text or '"' in text:
        return text
    return ",".join("=".join(p.strip() for p in rdn.split("=", 1)) for rdn in text.split(","))


def parse_condition(data: Any, where: str) -> tuple[Condition | None, list[str]]:
    """Parse one condition table; return it and every problem found (each naming ``where``)."""
    if not isinstance(data, Mapping):
        return None, [f"{where}: a condition must be a table, got {type(data).__name__}"]
    keys = set(data)
    for combinator in ("all", "any"):
        if combinator in keys:
            return _parse_list(combinator, data, where)
    if "not" in keys:
        if keys != {"not"}:
            return None, [f"{where}: 'not' cannot be combined with {sorted(keys - {'not'})}"]
        inner, problems = parse_condition(data["not"], f"{where}.not")
        return (NotCondition(inner) if inner else None), problems
    if "group" in keys:
        if keys != {"group"} or not isinstance(data["group"], str) or not data["group"]:
            return None, [f'{where}: a group condition is exactly {{ group = "name or DN" }}']
        return GroupCondition(group_label(data["group"])), []
    if "attr" in keys:
        return _parse_attr(data, where)
    return None, [f"{where}: unknown condition {sorted(keys)}; use all, any, not, group or attr"]


def _parse_list(combinator: str, data: Mapping[str, Any], where: str) -> tuple[Condition | None, list[str]]:
    if set(data) != {combinator}:
        return None, [f"{where}: '{combinator}' cannot be combined with {sorted(set(data) - {combinator})}"]
    items = data[combinator]
    if not isinstance(items, list) or not items:
        return None, [f"{where}.{combinator}: must be a non-empty list of conditions"]
    parsed: list[Condition] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        cond, probs = parse_condition(item, f"{where}.{combinator}[{i}]")
        problems += probs
        if cond is not None:
            parsed.append(cond)
    if problems:
        return None, problems
    cls = AllCondition if combinator == "all" else AnyCondition
    return cls(tuple(parsed)), []


def _parse_attr(data: Mapping[str, Any], where: str) -> tuple[Condition | None, list[str]]:
    attr = data["attr"]
    if not isinstance(attr, str) or not attr:
        return None, [f"{where}.attr: must be a non-empty string"]
    ops = [k for k in data if k in ATTR_OPS]
    unknown = set(data) - {"attr", "case_sensitive", *ATTR_OPS}
    if unknown:
        return None, [f"{where}: unknown key(s) {sorted(unknown)}; operators are {', '.join(ATTR_OPS)}"]
    if len(ops) != 1:
        return None, [
            f"{where}: attribute condition on {attr!r} needs exactly one operator of {', '.join(ATTR_OPS)}"
        ]
    if not isinstance(data.get("case_sensitive", False), bool):
        return None, [f"{where}.case_sensitive: must be true or false"]
    op, value = ops[0], data[ops[0]]
    problem = _check_value(op, value)
    if problem:
        return None, [f"{where}.{op}: {problem}"]
    cs = bool(data.get("case_sensitive", False))
    if op == "regex":
        value = re.compile(value, 0 if cs else re.IGNORECASE)
    elif op == "one_of":
        value = tuple(value) if cs else tuple(v.casefold() for v in value)
    elif op == "equals" and not cs:
        value = value.casefold()
    return AttrCondition(attr.lower(), op, value, cs), []


def _check_value(op: str, value: Any) -> str | None:
    if op == "equals":
        return None if isinstance(value, str) else "must be a string"
    if op == "one_of":
        ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        return None if ok else "must be a non-empty list of strings"
    if op == "regex":
        if not isinstance(value, str):
            return "must be a string"
        try:
            re.compile(value)
        except re.error as exc:
            return f"invalid regular expression {value!r}: {exc}"
        return None
    if op == "present":
        return None if isinstance(value, bool) else "must be true or false"
    # before / after
    if isinstance(value, date):
        return None
    if isinstance(value, str) and (_RELATIVE.match(value) or _parse_date(value)):
        return None
    return "must be a date (YYYY-MM-DD), 'today', or 'today+Nd' / 'today-Nd'"


def _parse_date(text: str) -> date | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _reference_date(value: Any, today: date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    m = _RELATIVE.match(value)
    if m:
        days = int(m.group(2) or 0)
        return today + timedelta(days=-days if m.group(1) == "-" else days)
    parsed = _parse_date(value)
    assert parsed is not None  # validated at parse time
    return parsed


def evaluate(cond: Condition, ident: Identity, today: date) -> tuple[bool, Evidence]:
    """True and the evidence when ``ident`` satisfies ``cond``."""
    if isinstance(cond, AttrCondition):
        return _eval_attr(cond, ident, today)
    if isinstance(cond, GroupCondition):
        hit = cond.group in ident.groups
        return hit, ((("group", cond.group),) if hit else ())
    if isinstance(cond, AllCondition):
        evidence: list[tuple[str, str]] = []
        for item in cond.items:
            ok, ev = evaluate(item, ident, today)
            if not ok:
                return False, ()
            evidence += ev
        return True, tuple(evidence)
    if isinstance(cond, AnyCondition):
        for item in cond.items:
            ok, ev = evaluate(item, ident, today)
            if ok:
                return True, ev
        return False, ()
    ok, _ = evaluate(cond.item, ident, today)
    return (not ok), ()


def _eval_attr(cond: AttrCondition, ident: Identity, today: date) -> tuple[bool, Evidence]:
    values = ident.attributes.get(cond.attr, ())
    if cond.op == "present":
        return (bool(values) == cond.value), ((cond.attr, values[0]),) if values and cond.value else ()
    for raw in values:
        if _match_value(cond, raw, today):
            return True, ((cond.attr, raw),)
    return False, ()


def _match_value(cond: AttrCondition, raw: str, today: date) -> bool:
    if cond.op == "equals":
        return bool((raw if cond.case_sensitive else raw.casefold()) == cond.value)
    if cond.op == "one_of":
        return (raw if cond.case_sensitive else raw.casefold()) in cond.value
    if cond.op == "regex":
        return cond.value.search(raw) is not None
    when = _parse_date(raw)
    if when is None:
        return False
    ref = _reference_date(cond.value, today)
    return when < ref if cond.op == "before" else when > ref
