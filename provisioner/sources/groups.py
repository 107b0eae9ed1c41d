"""Group membership (nested, cycle-safe) and snapshot assembly shared by the
LDAP and LDIF sources."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from provisioner.core.values.model import Identity, SourceSnapshot
from provisioner.sources.attributes import AttributeMap, RawAttributes, decode_text, map_entry

MEMBER_ATTRIBUTES = ("member", "uniquemember")
_DN_SPECIAL = frozenset(',+"\\<>;=')
_SLOW_DN = re.compile(r'[\\"+;<>#]')
"""Characters that need the full DN parser; most DNs take the fast path."""


# --------------------------------------------------------------------------- DNs


def _rdn_parts(dn: str) -> list[list[tuple[str, str]]]:
    """Split a DN into RDNs of (attribute, unescaped value) pairs."""
    rdns: list[list[tuple[str, str]]] = [[]]
    attr: str | None = None
    buf = bytearray()
    i = 0
    while i < len(dn):
        ch = dn[i]
        if ch == "\\" and i + 1 < len(dn):
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                buf.append(int(pair, 16))
                i += 3
                continue
            buf.extend(dn[i + 1].encode())
            i += 2
            continue
        if ch == "=" and attr is None:
            attr, buf = buf.decode("utf-8", "replace").strip(), bytearray()
        elif ch in ",;+" and attr is not None:
            rdns[-1].append((attr, buf.decode("utf-8", "replace").strip()))
            attr, buf = None, bytearray()
            if ch != "+":
                rdns.append([])
        else:
            buf.extend(ch.encode())
        i += 1
    if attr is not None:
        rdns[-1].append((attr, buf.decode("utf-8", "replace").strip()))
    return [r for r in rdns if r]


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in _DN_SPECIAL else c for c in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") and not out.endswith("\\ ") else out


def norm_dn(dn: str) -> str:
    """Lower-cased DN with canonical spacing and escaping, for comparisons."""
    if not _SLOW_DN.search(dn):
        parts = [rdn.partition("=") for rdn in dn.lower().split(",")]
        if all(sep and "=" not in v for _, sep, v in parts):
            return ",".join(f"{a.strip()}={v.strip()}" for a, _, v in parts)
    rdns = _rdn_parts(dn)
    if not rdns:
        return dn.strip().lower()
    return ",".join(
        "+".join(f"{a.lower()}={_escape(v.lower())}" for a, v in sorted(rdn)) for rdn in rdns
    )


class DnNames:
    """:func:`norm_dn` memoised: the same DN comes back as a member of many groups, and
    (in a warm process) in every run.  Owned by whoever reads: one per read, or the
    source memory's (sources/memory.py) across a daemon's runs; bounded."""

    __slots__ = ("_seen",)
    LIMIT = 1 << 18

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, dn: str) -> str:
        found = self._seen.get(dn)
        if found is None:
            if len(self._seen) >= self.LIMIT:
                self._seen.clear()
            found = self._seen[dn] = norm_dn(dn)
        return found


def _member_dn(value: str) -> str:
    """Strip the optional ``#'0101'B`` uid suffix of nameAndOptionalUID values."""
    if value.endswith("'B") and "#'" in value:
        return value[: value.rindex("#'")]
    return value


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True, slots=True)
class GroupRecord:
    dn: str
    names: tuple[str, ...]
    members: tuple[str, ...]


def group_record(dn: str, raw: RawAttributes) -> GroupRecord:
    """Build a group from raw attributes: names from ``cn``, members from
    ``member`` and ``uniqueMember``."""
    names = tuple(decode_text(v) for v in raw.get("cn", ()))
    members = tuple(
        _member_dn(decode_text(v)) for attr in MEMBER_ATTRIBUTES for v in raw.get(attr, ())
    )
    return GroupRecord(dn, names, members)


def ambiguous_names(groups: Iterable[GroupRecord], norm: Callable[[str], str] = norm_dn) -> dict[str, tuple[str, ...]]:
    """Lower-cased names (cn values) that more than one group carries -> those groups' DNs."""
    by_name: dict[str, dict[str, str]] = {}
    for group in groups:
        for name in {n.lower() for n in group.names if n}:
            by_name.setdefault(name, {})[norm(group.dn)] = group.dn
    return {name: tuple(sorted(dns.values())) for name, dns in sorted(by_name.items()) if len(dns) > 1}


class GroupGraph:
    """Transitive group membership; iterative, so neither depth nor cycles matter.

    A name several groups carry (``ambiguous``) labels none of them: rules must use the DN."""

    def __init__(self, groups: Iterable[GroupRecord], norm: Callable[[str], str] | None = None) -> None:
        self._norm = norm = norm if norm is not None else DnNames()
        self._labels: dict[str, frozenset[str]] = {}
        self._parents: dict[str, list[str]] = {}
        self._closure: dict[str, frozenset[str]] = {}
        groups = list(groups)
        self.ambiguous: Mapping[str, tuple[str, ...]] = ambiguous_names(groups, norm)
        for group in groups:
            key = norm(group.dn)
            labels = {key, *(n.lower() for n in group.names if n and n.lower() not in self.ambiguous)}
            self._labels[key] = self._labels.get(key, frozenset()) | labels
            for member in group.members:
                self._parents.setdefault(norm(member), []).append(key)

    def __len__(self) -> int:
        return len(self._labels)

    def _ancestors(self, group: str) -> frozenset[str]:
        cached = self._closure.get(group)
        if cached is not None:
            return cached
        seen = {group}
        queue = deque([group])
        while queue:
            for parent in self._parents.get(queue.popleft(), ()):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        labels = frozenset().union(*(self._labels[g] for g in seen))
        self._closure[group] = labels
        return labels

    def groups_of(self, member_dn: str) -> frozenset[str]:
        """Names and DNs (lower-cased) of every group ``member_dn`` is in, transitively."""
        direct = self._parents.get(self._norm(member_dn), ())
        return frozenset().union(*(self._ancestors(g) for g in direct))


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user entry after mapping, before group resolution; ``stable_id`` or
    ``username`` empty = the entry is skipped (counted in the warnings).  The
    incremental reader keeps these between runs."""

    dn: str
    stable_id: str
    username: str
    enabled: bool
    attributes: Mapping[str, tuple[str, ...]]
    problems: tuple[str, ...] = ()


def user_record(dn: str, raw: RawAttributes, amap: AttributeMap, shared: dict[Any, Any] | None = None) -> UserRecord:
    """``shared``: see :func:`map_entry`."""
    entry = map_entry(dn, raw, amap, shared)
    attrs = entry.attributes
    sid, name = attrs.get("stable_id", ()), attrs.get("username", ())
    return UserRecord(
        dn, sid[0] if sid else "", name[0] if name else "", entry.enabled, attrs, tuple(entry.problems)
    )


class Membership(Protocol):
    ambiguous: Mapping[str, tuple[str, ...]]
    """Names several groups carry -> their DNs (see :func:`ambiguous_names`)."""

    def __len__(self) -> int: ...

    def groups_of(self, member_dn: str) -> frozenset[str]: ...


def build_snapshot(
    source: str,
    users: Iterable[tuple[str, RawAttributes]],
    groups: Sequence[GroupRecord],
    amap: AttributeMap,
    warnings: Sequence[str] = (),
    norm: Callable[[str], str] | None = None,
) -> SourceSnapshot:
    """Map user entries to identities with resolved groups; entries without a
    username or stable id are skipped and counted in ``warnings``.  ``norm``: the
    reader's DN memo (:class:`DnNames`), else one for this call."""
    shared: dict[Any, Any] = {}
    records = [user_record(dn, raw, amap, shared) for dn, raw in users]
    return assemble(source, records, GroupGraph(groups, norm), amap, warnings)


def assemble(
    source: str,
    records: Iterable[UserRecord],
    membership: Membership,
    amap: AttributeMap,
    warnings: Sequence[str] = (),
    reuse: Mapping[str, tuple[UserRecord, Identity]] | None = None,
    built: dict[str, tuple[UserRecord, Identity]] | None = None,
    regroup: bool = False,
) -> SourceSnapshot:
    """Identities from mapped user records (in order) and group membership.

    ``reuse``: identities built by an earlier call, by DN; one is taken again when its
    record is the very same object and -- if the groups changed since (``regroup``) --
    its transitive groups are equal to ``membership``'s.  ``built`` collects this
    call's identities the same way."""
    identities: list[Identity] = []
    notes = list(warnings)
    skipped: list[str] = []
    seen_ids: dict[str, list[str]] = {}
    for rec in records:
        notes.extend(rec.problems)
        if not rec.stable_id or not rec.username:
            skipped.append(rec.dn)
        elif rec.stable_id in seen_ids:  # which entry is the person is unknown: the core fails safe
            notes.append(f"{rec.dn}: duplicate stable id {rec.stable_id}; entry skipped, the identity treated as left")
            seen_ids[rec.stable_id].append(rec.dn)
        else:
            seen_ids[rec.stable_id] = [rec.dn]
            prev = reuse.get(rec.dn) if reuse is not None else None
            groups = membership.groups_of(rec.dn) if regroup or prev is None or prev[0] is not rec else None
            if prev is not None and prev[0] is rec and (groups is None or groups == prev[1].groups):
                ident = prev[1]
            else:
                ident = Identity(
                    stable_id=rec.stable_id,
                    username=rec.username,
                    source=source,
                    attributes=rec.attributes,
                    groups=groups if groups is not None else membership.groups_of(rec.dn),
                    enabled=rec.enabled,
                    dn=rec.dn,
                )
            identities.append(ident)
            if built is not None:
                built[rec.dn] = (rec, ident)
    if skipped:
        notes.append(
            f"{len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} skipped without "
            f"{amap.username} or {amap.stable_id} (first: {skipped[0]})"
        )
    return SourceSnapshot(
        source=source,
        identities=tuple(identities),
        group_count=len(membership),
        ambiguous_groups=membership.ambiguous,
        complete=True,
        read_at=datetime.now(UTC),
        shared_ids={sid: tuple(dns) for sid, dns in seen_ids.items() if len(dns) > 1},
        warnings=tuple(notes),
    )


def lower_keys(raw: Mapping[str, Sequence[bytes]]) -> dict[str, list[bytes]]:
    """Merge attribute names case-insensitively (``entryUUID`` == ``entryuuid``)."""
    out = {name.lower(): list(values) for name, values in raw.items()}
    if len(out) == len(raw):
        return out
    out = {}
    for name, values in raw.items():
        out.setdefault(name.lower(), []).extend(values)
    return out
