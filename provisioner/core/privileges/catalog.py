"""The role catalog: what each business role is, who owns it, how sensitive it is.

Catalog files live in ``mappings/roles/*.toml`` as ``[role.NAME]`` tables.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from provisioner.core.values.tomltypes import text_problem


class Sensitivity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Sensitivity:
        return cls[text.upper()]


ROLE_KEYS = {"description", "owner", "sensitivity"}


@dataclass(frozen=True, slots=True)
class CatalogRole:
    name: str
    description: str
    owner: str
    sensitivity: Sensitivity
    file: str
    """``path:line`` of its ``[role.NAME]`` header."""
    extra: Mapping[str, Any]
    """Keys later features read (privileges, inherits ...)."""


PUBLIC_MODES = ("report", "revoke")


@dataclass(frozen=True, slots=True)
class Catalog:
    roles: Mapping[str, CatalogRole]
    public: str = "report"
    """What happens to privileges PUBLIC holds on managed databases: ``report``
    (default) or ``revoke`` (``[public] privileges = "revoke"`` in a catalog file)."""

    def sensitivity(self, role: str) -> Sensitivity:
        entry = self.roles.get(role)
        return entry.sensitivity if entry else Sensitivity.LOW


def build_catalog(
    files: Iterable[tuple[str, str]], extra_keys: Iterable[str] = ()
) -> tuple[Catalog, list[str]]:
    allowed = ROLE_KEYS | set(extra_keys)
    roles: dict[str, CatalogRole] = {}
    problems: list[str] = []
    public: tuple[str, str] | None = None
    for filename, text in files:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{filename}: not valid TOML: {exc}")
            continue
        if set(data) - {"role", "public"}:
            problems.append(
                f"{filename}: unknown top-level key(s) {sorted(set(data) - {'role', 'public'})}; "
                "expected [role.NAME] or [public]"
            )
        lines = _header_lines(text)
        if "public" in data:
            mode, probs = _parse_public(data["public"], filename, public)
            problems += probs
            public = (mode, filename) if mode is not None else public
        tables = data.get("role") or {}
        if not isinstance(tables, dict):
            problems.append(f"{filename}: 'role' must be a table of [role.NAME] tables")
            tables = {}
        for name, body in tables.items():
            role, probs = _parse_role(name, body, f"{filename}:{lines.get(name, 1)}", allowed)
            problems += probs
            if role is None:
                continue
            if name in roles:
                problems.append(f"{filename}:{lines.get(name, 1)}: role {name!r} already defined in {roles[name].file}")
                continue
            roles[name] = role
    return Catalog(roles, public[0] if public else "report"), problems


def _parse_public(body: Any, filename: str, seen: tuple[str, str] | None) -> tuple[str | None, list[str]]:
    """``[public] privileges = "report" | "revoke"``: once across all catalog files."""
    if seen is not None:
        return None, [f"{filename}: [public] already set in {seen[1]}"]
    if not isinstance(body, dict) or set(body) - {"privileges"}:
        return None, [f"{filename}: [public] takes one key, privileges = \"report\" | \"revoke\""]
    mode = body.get("privileges", "report")
    if mode not in PUBLIC_MODES:
        return None, [f"{filename}: [public] privileges {mode!r} is not one of 'report', 'revoke'"]
    return str(mode), []


_HEADER = re.compile(r"""^\s*\[\s*role\s*\.\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[\].]""")


def _header_lines(text: str) -> dict[str, int]:
    """Role name -> the line of its first ``[role.NAME]`` (or ``[role.NAME.sub]``) header."""
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            out.setdefault(next(g for g in m.groups() if g is not None), number)
    return out


def _parse_role(
    name: str, body: Any, location: str, allowed: set[str]
) -> tuple[CatalogRole | None, list[str]]:
    where = f"{location}: [role.{name}]"
    if not isinstance(body, dict):
        return None, [f"{where}: must be a table"]
    problems = []
    unknown = set(body) - allowed
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for key in ("description", "owner"):
        wrong = text_problem(body, key)
        if wrong:
            problems.append(f"{where}: {wrong}")
    level = body.get("sensitivity", "low")
    try:
        sens = Sensitivity.parse(str(level))
    except KeyError:
        problems.append(f"{where}: sensitivity {level!r} is not one of low, medium, high, critical")
        sens = Sensitivity.LOW
    if problems:
        return None, problems
    extra = {k: v for k, v in body.items() if k not in ROLE_KEYS}
    return CatalogRole(name, body["description"].strip(), body["owner"].strip(), sens, location, extra), []

