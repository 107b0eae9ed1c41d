"""Mapping rules: identity conditions in, role memberships out.

Rule files are TOML (``mappings/rules/*.toml``), parsed here from text the
caller has read, so this module does no I/O.  Every problem in every file is
reported at once, each naming the file and the line of its ``[[rule]]``.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from provisioner.core.conditions import Condition, evaluate, parse_condition
from provisioner.core.model import Identity, Reason
from provisioner.core.naming import normalise

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RULE_KEYS = {"id", "description", "grant", "when", "enabled"}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    grants: tuple[str, ...]
    when: Condition
    file: str
    line: int
    enabled: bool = True

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]

    def grants_for(self, ident: Identity, today: date) -> list[Grant]:
        out: list[Grant] = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            ok, evidence = evaluate(rule.when, ident, today)
            if not ok:
                continue
            reason = Reason(rule.id, _evidence_text(evidence), evidence)
            for template in rule.grants:
                out.extend(Grant(role, reason) for role in render(template, ident))
        return out

    def roles_for(self, ident: Identity, today: date) -> set[str]:
        return {g.role for g in self.grants_for(ident, today)}

    def referenced_groups(self) -> set[str]:
        """Literal role names granted by some rule (templates excluded)."""
        return {g for r in self.rules for g in r.grants if not _PLACEHOLDER.search(g)}

    def by_id(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def _evidence_text(evidence: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in evidence) or "always"


def render(template: str, ident: Identity) -> list[str]:
    """Expand ``{attr}`` placeholders with every value of the attribute
    (normalised); a literal name is returned unchanged."""
    keys = _PLACEHOLDER.findall(template)
    if not keys:
        return [template]
    choices: list[tuple[str, ...]] = []
    for key in keys:
        values = (ident.username,) if key == "username" else ident.attributes.get(key, ())
        cleaned = tuple(v for v in (normalise(x) for x in values) if v)
        if not cleaned:
            return []
        choices.append(cleaned)
    out = []
    for combo in itertools.product(*choices):
        parts = iter(combo)
        name = _PLACEHOLDER.sub(lambda _m, it=parts: next(it), template)  # type: ignore[misc]
        if name and len(name.encode()) <= 63:
            out.append(name)
    return out


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
        problems.append(f"{where}: 'id' is required: letters, digits, '_', '.', '-'")
    desc = raw.get("description")
    if not isinstance(desc, str) or not desc.strip():
        problems.append(f"{where}: 'description' is required and must say why the rule exists")
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
    if problems or cond is None:
        return None, problems
    return Rule(str(rid), str(desc).strip(), tuple(grants), cond, filename, line, bool(enabled)), []


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
