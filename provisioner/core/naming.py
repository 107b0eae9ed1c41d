"""Deterministic database role names derived from identities."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from provisioner.core.model import Identity

_DISALLOWED = re.compile(r"[^a-z0-9_]+")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class NamingPolicy:
    template: str = "{username}"
    prefix: str = ""
    max_bytes: int = 63


def normalise(text: str, max_bytes: int = 63) -> str:
    """Lower-case ASCII letters, digits and ``_`` only; runs of anything else
    become one ``_``; cut to ``max_bytes`` (PostgreSQL's NAMEDATALEN - 1)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _DISALLOWED.sub("_", ascii_text.lower()).strip("_")
    return name[:max_bytes].rstrip("_")


def role_name(identity: Identity, policy: NamingPolicy) -> str | None:
    """The role name for ``identity``, or None when the template has nothing to work with."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "username":
            return identity.username
        return identity.first(key) or ""

    raw = _PLACEHOLDER.sub(value, policy.template)
    name = normalise(policy.prefix + raw, policy.max_bytes)
    return name or None


@dataclass(frozen=True, slots=True)
class Naming:
    names: dict[str, str]
    """stable id -> role name, for identities whose name is unambiguous."""
    problems: tuple[str, ...]
    held: frozenset[str]
    """Names that several identities map to: nobody gets them this run."""


def assign_names(
    identities: Iterable[Identity], policy: NamingPolicy, name_of: Callable[[Identity], str | None] | None = None
) -> Naming:
    """``name_of``: ``role_name`` under ``policy``, possibly memoised."""
    by_name: dict[str, list[Identity]] = {}
    problems: list[str] = []
    for ident in identities:
        name = name_of(ident) if name_of is not None else role_name(ident, policy)
        if name is None:
            problems.append(
                f"identity {ident.stable_id} ({ident.source}: {ident.dn or ident.username!r}) "
                f"yields an empty role name from template {policy.template!r}; skipped"
            )
            continue
        by_name.setdefault(name, []).append(ident)
    names: dict[str, str] = {}
    held: set[str] = set()
    shared = []
    for name, group in by_name.items():
        if len(group) == 1:
            names[group[0].stable_id] = name
        else:
            shared.append((name, group))
    for name, group in sorted(shared, key=lambda item: item[0]):  # collisions reported in name order
        ids = {i.stable_id for i in group}
        if len(ids) > 1:
            held.add(name)
            who = ", ".join(sorted(f"{i.username} ({i.source}:{i.stable_id})" for i in group))
            problems.append(f"role name collision: {name!r} would belong to {who}; none of them is changed")
            continue
        names[group[0].stable_id] = name
    return Naming(names, tuple(problems), frozenset(held))
