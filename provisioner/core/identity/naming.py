"""Deterministic database role names derived from identities.

One policy (docs/rules.md, "Role names"): with ``charset = "ascii"`` (the default)
every script is transliterated (the shell passes anyascii in :class:`Scripts`), lower-
cased, and anything but ``a-z 0-9 _`` becomes ``_``; with ``"unicode"`` the name is NFC,
lower-cased, and letters, marks and digits of every script are kept.  A name with no
letter or digit left is refused with the reason.  Two identities whose names differ but
look alike (equal Unicode TR39 skeletons, from the prototypes in :class:`Scripts`) are
both refused and reported, like two identities with the same name."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from provisioner.core.identity.placeholders import substitute
from provisioner.core.values.model import Identity

_DISALLOWED = re.compile(r"[^a-z0-9_]+")


def _fold_only(text: str) -> str:
    """Without transliteration tables: decomposed accents dropped, other scripts lost."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


@dataclass(frozen=True, slots=True)
class Scripts:
    """What naming needs from Unicode data the core cannot load itself: a transliteration
    to ASCII and the TR39 confusable prototypes (character -> prototype).  Equal by
    ``version`` only, so a policy compares cheaply."""

    version: str = "fold"
    transliterate: Callable[[str], str] = field(default=_fold_only, compare=False)
    prototypes: Mapping[str, str] = field(default_factory=dict, compare=False)

    def skeleton(self, text: str) -> str:
        """TR39 skeleton: NFD, each character to its prototype, NFD again."""
        get = self.prototypes.get
        return unicodedata.normalize("NFD", "".join(get(c, c) for c in unicodedata.normalize("NFD", text)))


@dataclass(frozen=True, slots=True)
class NamingPolicy:
    template: str = "{username}"
    prefix: str = ""
    max_bytes: int = 63
    charset: Literal["ascii", "unicode"] = "ascii"
    scripts: Scripts = field(default_factory=Scripts)


def normalise(text: str, max_bytes: int = 63, scripts: Scripts | None = None) -> str:
    """Lower-case ASCII letters, digits and ``_`` only (other scripts transliterated);
    runs of anything else become one ``_``; cut to ``max_bytes`` (PostgreSQL's
    NAMEDATALEN - 1)."""
    ascii_text = (scripts or Scripts()).transliterate(text)
    name = _DISALLOWED.sub("_", ascii_text.lower()).strip("_")
    return name[:max_bytes].rstrip("_")


def normalise_unicode(text: str, max_bytes: int = 63) -> str:
    """NFC, lower-case; letters, marks and digits of any script and ``_`` kept, runs of
    anything else one ``_``; cut to ``max_bytes`` UTF-8 bytes on a character boundary."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text).lower():
        keep = ch == "_" or unicodedata.category(ch)[0] in "LM" or unicodedata.category(ch) == "Nd"
        if keep:
            out.append(ch)
        elif out and out[-1] != "_":
            out.append("_")
    name = "".join(out).strip("_")
    cut = name.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    return unicodedata.normalize("NFC", cut).rstrip("_")


def _usable(name: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in name)


def role_name(identity: Identity, policy: NamingPolicy) -> str | None:
    """The role name for ``identity``, or None when nothing usable is left (no letter or digit)."""

    def value(key: str) -> str:
        if key == "username":
            return identity.username
        return identity.first(key) or ""

    raw = substitute(policy.template, value)
    if policy.charset == "unicode":
        own, name = normalise_unicode(raw), normalise_unicode(policy.prefix + raw, policy.max_bytes)
    else:
        own, name = normalise(raw, 63, policy.scripts), normalise(policy.prefix + raw, policy.max_bytes, policy.scripts)
    return name if _usable(own) else None  # the prefix alone is no name


@dataclass(frozen=True, slots=True)
class Naming:
    names: dict[str, str]
    """stable id -> role name, for identities whose name is unambiguous."""
    problems: tuple[str, ...]
    held: frozenset[str]
    """Names that several identities map to: nobody gets them this run."""
    contenders: Mapping[str, tuple[Identity, ...]] = field(default_factory=dict)
    """Held name -> the identities that map to it (a leaver among them still loses its role)."""


def assign_names(
    identities: Iterable[Identity],
    policy: NamingPolicy,
    name_of: Callable[[Identity], str | None] | None = None,
    skeleton_of: Callable[[str], str] | None = None,
) -> Naming:
    """``name_of``: ``role_name`` under ``policy``, possibly memoised; ``skeleton_of``:
    ``policy.scripts.skeleton``, possibly memoised (a skeleton depends on the name only)."""
    by_name: dict[str, list[Identity]] = {}
    problems: list[str] = []
    for ident in identities:
        name = name_of(ident) if name_of is not None else role_name(ident, policy)
        if name is None:
            what = "transliterates" if policy.charset == "ascii" else "reduces"
            problems.append(
                f"identity {ident.username!r} ({ident.source}: {ident.dn or ident.stable_id}): template "
                f"{policy.template!r} {what} to no usable role name (no letter or digit left); refused"
            )
            continue
        by_name.setdefault(name, []).append(ident)
    names: dict[str, str] = {}
    held: set[str] = set()
    contenders: dict[str, tuple[Identity, ...]] = {}
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
            contenders[name] = tuple(group)
            who = ", ".join(sorted(f"{i.username} ({i.source}:{i.stable_id})" for i in group))
            problems.append(f"role name collision: {name!r} would belong to {who}; none of them is changed")
            continue
        names[group[0].stable_id] = name
    _refuse_confusables(names, by_name, policy.scripts, held, problems, skeleton_of)
    for name in held:
        contenders.setdefault(name, tuple(by_name[name]))
    return Naming(names, tuple(problems), frozenset(held), contenders)


def _refuse_confusables(
    names: dict[str, str],
    by_name: Mapping[str, list[Identity]],
    scripts: Scripts,
    held: set[str],
    problems: list[str],
    skeleton_of: Callable[[str], str] | None = None,
) -> None:
    """Different names with one TR39 skeleton: every one of them is refused."""
    if not scripts.prototypes:
        return
    skeleton = skeleton_of or scripts.skeleton
    by_skeleton: dict[str, list[str]] = {}
    for name in sorted(set(names.values())):
        by_skeleton.setdefault(skeleton(name), []).append(name)
    for alike in by_skeleton.values():
        if len(alike) < 2:
            continue
        who = ", ".join(f"{n!r} ({_who(by_name[n][0])}){_spelled(n)}" for n in alike)
        problems.append(f"confusable role names: {who} look alike (Unicode TR39); none of them is changed")
        for n in alike:
            held.add(n)
            for ident in by_name[n]:
                names.pop(ident.stable_id, None)


def _who(ident: Identity) -> str:
    return f"{ident.username!r}, {ident.source}:{ident.stable_id}"


def _spelled(name: str) -> str:
    """Look-alikes print alike: each non-ASCII character of ``name`` by code point and name."""
    odd = dict.fromkeys(c for c in name if not c.isascii())
    if not odd:
        return ""
    return " [" + ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'UNNAMED')}" for c in odd) + "]"
