"""Rule test cases: identity attributes in, expected roles out.

Cases live in ``mappings/tests/*.toml`` as ``[[case]]`` tables::

    [[case]]
    name = "equity trader executes trades"
    attributes = { department = "Trading", title = "Equity Trader" }
    groups = ["desk-equities"]
    expect = ["trade_executor", "trade_reader"]

A file may describe nested groups once for all its cases: ``[hierarchy]`` maps a group
to the groups it is a member of, so a case in ``desk-equities`` below is also in
``trading-floor`` and ``all-staff``, as a directory with nested groups would say::

    [hierarchy]
    desk-equities = ["trading-floor"]
    trading-floor = ["all-staff"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from provisioner.core.identity.rules import RuleSet
from provisioner.core.values.model import Identity
from provisioner.core.values.tomltypes import text_problem

CASE_KEYS = {"name", "attributes", "groups", "expect", "today", "enabled"}


@dataclass(frozen=True, slots=True)
class RuleCase:
    name: str
    identity: Identity
    expect: frozenset[str]
    today: date | None
    where: str


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: RuleCase
    actual: frozenset[str]

    @property
    def passed(self) -> bool:
        return self.actual == self.case.expect

    def explain(self) -> str:
        missing = sorted(self.case.expect - self.actual)
        extra = sorted(self.actual - self.case.expect)
        return f"{self.case.where}: case {self.case.name!r}: missing {missing}, unexpected {extra}"


def parse_cases(files: Iterable[tuple[str, str]]) -> tuple[list[RuleCase], list[str]]:
    cases: list[RuleCase] = []
    problems: list[str] = []
    for filename, text in files:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{filename}: not valid TOML: {exc}")
            continue
        unknown = set(data) - {"case", "hierarchy"}
        if unknown:
            problems.append(f"{filename}: unknown top-level key(s) {sorted(unknown)}; expected [[case]], [hierarchy]")
        parents, probs = _parse_hierarchy(data.get("hierarchy", {}), filename, text)
        problems += probs
        lines = [i for i, ln in enumerate(text.splitlines(), 1) if ln.strip().startswith("[[case]]")]
        raw_cases = data.get("case", [])
        if not isinstance(raw_cases, list):
            problems.append(f"{filename}: 'case' must be an array of tables ([[case]])")
            raw_cases = []
        for i, raw in enumerate(raw_cases):
            where = f"{filename}:{lines[i] if i < len(lines) else 1}"
            if not isinstance(raw, dict):
                problems.append(f"{where}: [[case]] must be a table")
                continue
            case, probs = _parse_case(raw, where, parents)
            problems += probs
            if case:
                cases.append(case)
    return cases, problems


def _parse_hierarchy(raw: Any, filename: str, text: str) -> tuple[dict[str, frozenset[str]], list[str]]:
    line = next((i for i, ln in enumerate(text.splitlines(), 1) if ln.strip().startswith("[hierarchy]")), 1)
    where = f"{filename}:{line}: [hierarchy]"
    if not isinstance(raw, dict):
        return {}, [f"{where}: must be a table of group = [parent groups]"]
    parents: dict[str, frozenset[str]] = {}
    problems = []
    for group, ups in raw.items():
        if not isinstance(ups, list) or not all(isinstance(u, str) for u in ups):
            problems.append(f"{where}: {group!r} must be a list of the groups it is a member of")
            continue
        parents[group.lower()] = frozenset(u.lower() for u in ups)
    return parents, problems


def nested(groups: Iterable[str], parents: dict[str, frozenset[str]]) -> frozenset[str]:
    """``groups`` and every group they are nested in, transitively (cycles end the walk)."""
    seen: set[str] = set()
    todo = list(groups)
    while todo:
        group = todo.pop()
        if group not in seen:
            seen.add(group)
            todo.extend(parents.get(group, ()))
    return frozenset(seen)


def _parse_case(
    raw: dict[str, Any], where: str, parents: dict[str, frozenset[str]] | None = None
) -> tuple[RuleCase | None, list[str]]:
    problems = []
    if set(raw) - CASE_KEYS:
        problems.append(f"{where}: unknown key(s) {sorted(set(raw) - CASE_KEYS)}")
    name = raw.get("name")
    attrs = raw.get("attributes", {})
    groups = raw.get("groups", [])
    expect = raw.get("expect")
    wrong = text_problem(raw, "name")
    if wrong:
        problems.append(f"{where}: {wrong}")
    if not isinstance(attrs, dict):
        problems.append(f"{where}: 'attributes' must be a table")
    if not isinstance(groups, list):
        problems.append(f"{where}: 'groups' must be a list")
    if not isinstance(expect, list):
        problems.append(f"{where}: 'expect' must be a list of role names (may be empty)")
    today = raw.get("today")
    if today is not None and not isinstance(today, date):
        problems.append(f"{where}: 'today' must be a TOML date like 2026-11-26")
    if problems or raw.get("enabled", True) is False:
        return None, problems
    values = {k.lower(): tuple(v) if isinstance(v, list) else (str(v),) for k, v in attrs.items()}
    ident = Identity(
        stable_id=f"case:{name}",
        username=str(values.get("username", (str(name),))[0]),
        source="rule-test",
        attributes=values,
        groups=nested((str(g).lower() for g in groups), parents or {}),
    )
    return RuleCase(str(name), ident, frozenset(map(str, expect or [])), today, where), []


def run_cases(rules: RuleSet, cases: Iterable[RuleCase], today: date) -> list[CaseResult]:
    return [CaseResult(c, frozenset(rules.roles_for(c.identity, c.today or today))) for c in cases]
