"""Mapping rules: identity conditions in, role memberships out.

Rule files are TOML (``mappings/rules/*.toml``), parsed here from text the
caller has read, so this module does no I/O.  Every problem in every file is
reported at once, each naming the file and the line of its ``[[rule]]``.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from provisioner.core.identity.conditions import (
    AllCondition,
    AnyCondition,
    AttrCondition,
    Condition,
    Evidence,
    GroupCondition,
    evaluate,
    parse_condition,
)
from provisioner.core.identity.grouptemplate import (
    ANY_GROUP,
    GROUP_PLACEHOLDER,
    GroupFilter,
    LabelNames,
    group_names,
    parse_group_filter,
)
from provisioner.core.identity.naming import normalise
from provisioner.core.identity.placeholders import PLACEHOLDER, is_template, placeholders
from provisioner.core.values.model import Identity, Reason
from provisioner.core.values.tomltypes import id_problem, text_problem

_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RULE_KEYS = {"id", "description", "grant", "when", "enabled", "groups"}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    grants: tuple[str, ...]
    when: Condition
    file: str
    line: int
    enabled: bool = True
    groups: GroupFilter = ANY_GROUP
    """Which groups a ``{group}`` placeholder in ``grants`` expands over."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def templates_groups(self) -> bool:
        return any(GROUP_PLACEHOLDER in placeholders(t) for t in self.grants)


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    reason: Reason


Trigger = tuple[str, ...]
"""``("g", group)`` or ``("a", attribute, casefolded value)``."""


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Enabled rules by what they need to match: a rule is a candidate for an
    identity only if the identity has one of the rule's triggers (a group it
    tests, or an attribute value it compares for equality), or if no trigger
    could be derived (``always``).  Positions refer to ``RuleSet.rules``."""

    always: tuple[int, ...] = ()
    by_group: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    by_value: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()


def triggers(cond: Condition) -> frozenset[Trigger] | None:
    """A set of facts at least one of which must hold for ``cond`` to be true,
    or None when no such set is known (negations, regexes, dates, presence)."""
    if isinstance(cond, GroupCondition):
        return frozenset({("g", cond.group)})
    if isinstance(cond, AttrCondition):
        if cond.op == "equals":
            return frozenset({("a", cond.attr, str(cond.value).casefold())})
        if cond.op == "one_of":
            return frozenset(("a", cond.attr, str(v).casefold()) for v in cond.value)
        return None
    if isinstance(cond, AllCondition):
        known = [t for t in (triggers(i) for i in cond.items) if t is not None]
        return min(known, key=len) if known else None
    if isinstance(cond, AnyCondition):
        parts = [triggers(i) for i in cond.items]
        if any(p is None for p in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))
    return None


def build_index(rules: tuple[Rule, ...]) -> RuleIndex:
    always: list[int] = []
    by_group: dict[str, list[int]] = {}
    by_value: dict[tuple[str, str], list[int]] = {}
    for pos, rule in enumerate(rules):
        if not rule.enabled:
            continue
        found = triggers(rule.when)
        if not found:
            always.append(pos)
            continue
        for trig in found:
            if trig[0] == "g":
                by_group.setdefault(trig[1], []).append(pos)
            else:
                by_value.setdefault((trig[1], trig[2]), []).append(pos)
    return RuleIndex(
        tuple(always),
        {k: tuple(v) for k, v in by_group.items()},
        {k: tuple(v) for k, v in by_value.items()},
        tuple(sorted({a for a, _ in by_value})),
    )


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    index: RuleIndex = field(init=False, repr=False, compare=False)
    """Derived from ``rules`` at construction (not a cache: never changes)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", build_index(self.rules))

    def candidates(self, ident: Identity) -> list[Rule]:
        """The enabled rules that can match ``ident``, in file order."""
        idx = self.index
        hits = set(idx.always)
        by_group = idx.by_group
        if by_group:
            groups = ident.groups
            for key in (groups if len(groups) <= len(by_group) else by_group.keys() & groups):
                found = by_group.get(key)
                if found:
                    hits.update(found)
        by_value, get = idx.by_value, ident.attributes.get
        for attr in idx.attributes:
            for value in get(attr, ()):
                found = by_value.get((attr, value.casefold()))
                if found:
                    hits.update(found)
        rules = self.rules
        return [rules[i] for i in sorted(hits)]

    def grants_for(
        self,
        ident: Identity,
        today: date,
        labels: LabelNames | None = None,
        reasons: dict[tuple[str, Evidence], Reason] | None = None,
    ) -> list[Grant]:
        """``labels``: group names worked out before (see :func:`group_names`);
        ``reasons``: the reasons built before, by rule and evidence (equal values: one
        object serves every identity with the same evidence)."""
        out: list[Grant] = []
        known = reasons if reasons is not None else {}
        for rule in self.candidates(ident):
            ok, evidence = evaluate(rule.when, ident, today)
            if not ok:
                continue
            reason: Reason | None = None
            for template in rule.grants:
                for role, origin in render_origins(template, ident, rule.groups, labels):
                    if origin:
                        out.append(Grant(role, _reason(known, rule.id, (*evidence, ("from_group", origin)))))
                    else:
                        reason = reason or _reason(known, rule.id, evidence)
                        out.append(Grant(role, reason))
        return out

    def roles_for(self, ident: Identity, today: date) -> set[str]:
        return {g.role for g in self.grants_for(ident, today)}

    def referenced_groups(self) -> set[str]:
        """Literal role names granted by some rule (templates excluded)."""
        return {g for r in self.rules for g in r.grants if not is_template(g)}

    def by_id(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def _reason(known: dict[tuple[str, Evidence], Reason], rule: str, evidence: Evidence) -> Reason:
    found = known.get((rule, evidence))
    if found is None:
        found = known[(rule, evidence)] = Reason(rule, _evidence_text(evidence), evidence)
    return found


def _evidence_text(evidence: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in evidence) or "always"


def render(template: str, ident: Identity, groups: GroupFilter = ANY_GROUP) -> list[str]:
    """Expand ``{attr}`` placeholders with every value of the attribute
    (normalised), ``{group}`` with the name of every group ``groups`` admits;
    a literal name is returned unchanged."""
    return [role for role, _ in render_origins(template, ident, groups)]


def render_origins(
    template: str, ident: Identity, groups: GroupFilter = ANY_GROUP, labels: LabelNames | None = None
) -> list[tuple[str, str]]:
    """``render`` with, per role, the origin of its ``{group}`` value (the
    group's DN or ``name:<name>``; empty without ``{group}``)."""
    keys = placeholders(template)
    if not keys:
        return [(template, "")]
    if len(keys) == 1:  # one placeholder (``grp_{group}``, ``dept_{department}``): no product to form
        head, _, tail = template.partition("{" + keys[0] + "}")
        if keys[0] == GROUP_PLACEHOLDER:
            pairs = group_names(ident.groups, groups, labels)
        else:
            values = (ident.username,) if keys[0] == "username" else ident.attributes.get(keys[0], ())
            pairs = [(normalise(x, UNCUT), "") for x in values]  # never cut: see overlong_names
        one: dict[tuple[str, str], None] = {}
        for value, origin in pairs:
            name = head + value + tail
            if value and len(name.encode()) <= 63:
                one[(name, origin)] = None
        return list(one)
    choices: list[tuple[tuple[str, str], ...]] = []
    for key in keys:
        if key == GROUP_PLACEHOLDER:
            pairs = group_names(ident.groups, groups, labels)
        else:
            values = (ident.username,) if key == "username" else ident.attributes.get(key, ())
            pairs = [(normalise(x, UNCUT), "") for x in values]  # never cut: see overlong_names
        cleaned = tuple(p for p in pairs if p[0])
        if not cleaned:
            return []
        choices.append(cleaned)
    out: dict[tuple[str, str], None] = {}
    for combo in itertools.product(*choices):
        parts = iter(v for v, _ in combo)
        name = PLACEHOLDER.sub(lambda _m, it=parts: next(it), template)  # type: ignore[misc]
        if name and len(name.encode()) <= 63:
            out[(name, next((o for _, o in combo if o), ""))] = None
    return list(out)


UNCUT = 1 << 20
"""A value is never cut to fit a role name: two values differing past the cut would share one role."""


def overlong_check(rules: RuleSet) -> Callable[[Identity, date], list[str]] | None:
    """A check of one identity against every rule granting a role name templated from an
    attribute: one problem per value that makes such a name longer than 63 bytes
    (:func:`render_origins` grants no such name); None when no rule templates from an attribute.
    Made once per desired state: each distinct value is normalised once (departments repeat)."""
    parts = [
        (rule, template, len(PLACEHOLDER.sub("", template).encode()), keys)
        for rule in rules.rules
        if rule.enabled
        for template in rule.grants
        if (keys := [k for k in placeholders(template) if k != GROUP_PLACEHOLDER])
    ]
    if not parts:
        return None
    sizes: dict[str, int] = {}

    def size(value: str) -> int:
        n = sizes.get(value)
        if n is None:
            n = sizes[value] = len(normalise(value, UNCUT).encode())
        return n

    def check(ident: Identity, today: date) -> list[str]:
        out: list[str] = []
        for rule, template, fixed, keys in parts:
            long = [(k, v) for k in keys
                    for v in ((ident.username,) if k == "username" else ident.attributes.get(k, ()))
                    if fixed + size(v) > 63]
            if long and evaluate(rule.when, ident, today)[0]:
                out += [f"{ident.source}: {ident.username!r}: rule {rule.id!r} ({rule.where}) makes role name "
                        f"{template!r} from {k}={v!r} longer than 63 bytes; not granted" for k, v in long]
        return out

    return check


def _header_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines(), 1) if _RULE_HEADER.match(line)]


def parse_rule_file(text: str, filename: str) -> tuple[list[Rule], list[str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{filename}: not valid TOML: {exc}"]
    unknown = set(data) - {"rule"}
    problems = (
        [f"{filename}: unknown top-level key(s) {sorted(unknown)}; expected [[rule]] tables"]
        if unknown
        else []
    )
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        return [], [*problems, f"{filename}: 'rule' must be an array of tables ([[rule]])"]
    lines = _header_lines(text)
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules):
        line = lines[i] if i < len(lines) else 1
        if not isinstance(raw, dict):
            problems.append(f"{filename}:{line}: rule: [[rule]] must be a table")
            continue
        rule, probs = _parse_rule(raw, filename, line)
        problems += probs
        if rule:
            rules.append(rule)
    return rules, problems


def _parse_rule(raw: Mapping[str, Any], filename: str, line: int) -> tuple[Rule | None, list[str]]:
    rid = raw.get("id")
    where = f"{filename}:{line}: rule {rid!r}" if isinstance(rid, str) else f"{filename}:{line}: rule"
    problems = []
    unknown = set(raw) - RULE_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(RULE_KEYS)}")
    if not isinstance(rid, str) or not _ID.match(rid):
        problems.append(f"{where}: {id_problem(raw)}")
    desc = raw.get("description")
    wrong = text_problem(raw, "description", " and must say why the rule exists")
    if wrong:
        problems.append(f"{where}: {wrong}")
    grants = raw.get("grant")
    if isinstance(grants, str):
        grants = [grants]
    if not isinstance(grants, list) or not grants or not all(isinstance(g, str) for g in grants):
        problems.append(f"{where}: 'grant' must be a role name or a non-empty list of role names")
        grants = []
    problems += [p for g in grants if (p := _check_role_template(g, where))]
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: 'enabled' must be true or false")
    if "when" not in raw:
        problems.append(f"{where}: 'when' is required (a condition table)")
        cond = None
    else:
        cond, probs = parse_condition(raw["when"], f"{where}: when")
        problems += probs
    group_filter = ANY_GROUP
    if "groups" in raw:
        parsed, probs = parse_group_filter(raw["groups"], where)
        problems += probs
        group_filter = parsed or ANY_GROUP
        if not any(GROUP_PLACEHOLDER in placeholders(g) for g in grants):
            problems.append(f"{where}: 'groups' limits a {{group}} placeholder, but no grant uses {{group}}")
    if problems or cond is None:
        return None, problems
    rule = Rule(str(rid), str(desc).strip(), tuple(grants), cond, filename, line, bool(enabled), group_filter)
    return rule, []


def _check_role_template(name: str, where: str) -> str | None:
    if not name.strip():
        return f"{where}: an empty role name in 'grant'"
    if "\x00" in name:
        return f"{where}: role name {name!r} contains a NUL byte"
    if len(name.encode()) > 63:
        return f"{where}: role name {name!r} is longer than PostgreSQL's 63-byte limit"
    if name.startswith("pg_"):
        return f"{where}: role {name!r} is a PostgreSQL system role and cannot be granted by rules"
    return None


def build_ruleset(files: Iterable[tuple[str, str]]) -> tuple[RuleSet, list[str]]:
    """Parse ``(filename, text)`` pairs; return the rule set and every problem."""
    rules: list[Rule] = []
    problems: list[str] = []
    for filename, text in files:
        parsed, probs = parse_rule_file(text, filename)
        rules += parsed
        problems += probs
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in seen:
            problems.append(f"{rule.where}: rule id {rule.id!r} is already used at {seen[rule.id].where}")
        seen.setdefault(rule.id, rule)
    return RuleSet(tuple(rules)), problems
