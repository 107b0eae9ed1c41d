"""Roles templated from groups: ``grant = ["grp_{group}"]``.

A ``{group}`` placeholder expands to the name of every group the identity is
in (nested membership included, as the source resolved it), optionally limited
by the rule's ``groups`` table: ``under`` (a DN subtree) and ``match`` (a
regular expression the group name must match in full).  A group known by its
DN is named by the value of its first RDN (``cn=eq-desk,ou=groups,...`` ->
``eq-desk``); a group known only by name (rule tests, sources without DNs)
by that name, unless ``under`` asks for a subtree.

Every expansion carries its *origin* (the group's DN, or ``name:<name>``) so
two different groups that normalise to the same role name are reported as a
collision instead of silently sharing one role.  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.core.identity.naming import normalise
from provisioner.core.identity.placeholders import GROUP

GROUP_PLACEHOLDER = GROUP
GROUP_KEYS = frozenset({"under", "match"})
_HEX = re.compile(r"\\([0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class GroupFilter:
    """Which groups a ``{group}`` placeholder expands over."""

    under: str = ""
    """Normalised DN suffix (``ou=groups,dc=example``); empty = any group."""
    match: re.Pattern[str] | None = None
    """Case-insensitive full match on the group name; None = any name."""

    def admits(self, name: str, dn: str | None) -> bool:
        if self.under and (dn is None or not (dn == self.under or dn.endswith("," + self.under))):
            return False
        return self.match is None or self.match.fullmatch(name) is not None


ANY_GROUP = GroupFilter()


def canonical_dn(dn: str) -> str:
    """Lower-case, no spaces around ``,`` and ``=`` (how sources report group DNs)."""
    return ",".join("=".join(p.strip() for p in rdn.split("=", 1)) for rdn in dn.strip().lower().split(","))


def parse_group_filter(data: Any, where: str) -> tuple[GroupFilter | None, list[str]]:
    """Parse a rule's ``groups = { under = "...", match = "..." }`` table."""
    if not isinstance(data, Mapping):
        return None, [f"{where}: 'groups' must be a table {{ under = \"DN\", match = \"regex\" }}"]
    problems = []
    unknown = set(data) - GROUP_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)} in 'groups'; allowed: under, match")
    under = data.get("under", "")
    if not isinstance(under, str) or (under and "=" not in under):
        problems.append(f"{where}: groups.under must be a DN such as \"ou=groups,dc=example,dc=com\"")
        under = ""
    pattern = data.get("match")
    compiled: re.Pattern[str] | None = None
    if pattern is not None:
        if not isinstance(pattern, str):
            problems.append(f"{where}: groups.match must be a regular expression string")
        else:
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                problems.append(f"{where}: groups.match {pattern!r} is not a valid regular expression: {exc}")
    if problems:
        return None, problems
    return GroupFilter(canonical_dn(under) if under else "", compiled), []


def first_rdn_value(dn: str) -> str | None:
    """``eq-desk`` for ``cn=eq-desk,ou=groups,...``; None when ``dn`` is not a DN."""
    attr, sep, rest = dn.partition("=")
    if not sep or not attr or not attr.replace("-", "").replace(".", "").isalnum() or "," not in rest:
        return None
    first = rest[: rest.index(",")]
    if "\\" not in first and "+" not in first:  # the common case: nothing escaped, one attribute
        return first.strip() or None
    chars: list[str] = []
    i = 0
    while i < len(rest):
        c = rest[i]
        if c == "\\" and i + 1 < len(rest):
            hexed = _HEX.match(rest, i)
            if hexed:
                chars.append(chr(int(hexed.group(1), 16)))
                i += 3
                continue
            chars.append(rest[i + 1])
            i += 2
            continue
        if c in ",+":
            break
        chars.append(c)
        i += 1
    value = "".join(chars).strip()
    return value or None


LabelNames = dict[str, tuple[str | None, str]]
"""Group label -> (its first RDN value, or None when not a DN; the normalised name):
filled by :func:`group_names`, kept by the caller across identities (``GrantMemo``)."""


def group_names(groups: frozenset[str], flt: GroupFilter, labels: LabelNames | None = None) -> list[tuple[str, str]]:
    """``(normalised name, origin)`` of every group in ``groups`` the filter admits, sorted.

    ``groups`` is an identity's lower-cased group labels (names and DNs); a
    name that is also the first RDN value of one of the identity's group DNs is
    the same group and is not counted twice."""
    known: LabelNames = labels if labels is not None else {}
    from_dns: dict[str, list[tuple[str, str]]] = {}
    names: list[tuple[str, str]] = []
    for label in groups:
        hit = known.get(label)
        if hit is None:
            value = first_rdn_value(label)
            hit = known[label] = (value, normalise(label if value is None else value))
        value, norm = hit
        if value is None:
            names.append((label, norm))
        elif flt.admits(value, label):
            from_dns.setdefault(value, []).append((norm, label))
        else:
            from_dns.setdefault(value, [])  # refused by DN: its name label is the same group
    out = [pair for pairs in from_dns.values() for pair in pairs]
    if not flt.under:
        out += [(norm, "name:" + n) for n, norm in names if n not in from_dns and flt.admits(n, None)]
    return sorted(out)
