"""Frozen values shared by every stage of the pipeline.

Nothing here performs I/O.  Sources produce :class:`Identity` values, the rules
turn them into a :class:`DesiredState`, target inspectors produce an
:class:`ActualState`, and the diff compares the two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from provisioner.core.values.capabilities import POSTGRESQL, Capabilities
from provisioner.core.values.grants import PrivilegeSnapshot

# --------------------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class Identity:
    """One person (or service account) as a source sees it.

    ``stable_id`` never changes for a person (entryUUID, objectGUID, Entra object
    id); ``username`` may.  ``attributes`` use canonical lower-case names
    (``department``, ``title``, ``employee_type``, ``status``, ``hire_date``,
    ``leave_date``, ``manager`` ...) and are always multi-valued.  ``groups``
    holds every group the identity is in, nested membership resolved, each
    group by its lower-cased name and by its lower-cased DN / object id.
    """

    stable_id: str
    username: str
    source: str
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    enabled: bool = True
    dn: str = ""

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name, ())
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """Everything one source returned in one complete read."""

    source: str
    identities: tuple[Identity, ...]
    group_count: int = 0
    ambiguous_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Group names (lower-cased cn) that more than one group under the group base carries,
    with the DNs of those groups: such a name matches no one (a rule must name the DN)."""
    complete: bool = True
    read_at: datetime | None = None
    shared_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Stable ids that more than one entry carries, with the DNs of those entries: the
    identity (built from the first) is treated as having left now (core/identity/desired.py)."""
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    """Partial reads (a referral not followed ...): error notices in every plan; with
    ``complete`` False nobody of this source counts as vanished."""

    @property
    def unreadable(self) -> bool:
        """The source could not be read at all (engine/connections.py): no identity, incomplete."""
        return not self.complete and not self.identities


# --------------------------------------------------------------------------- reasons


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a change is planned: a rule and the attribute values that matched,
    a lifecycle event, drift, or an operator's request."""

    rule: str
    text: str
    attributes: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "text": self.text, "attributes": dict(self.attributes)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reason:
        attrs = data.get("attributes") or {}
        return cls(str(data["rule"]), str(data["text"]), tuple((str(k), str(v)) for k, v in attrs.items()))

    def describe(self) -> str:
        return f"{self.rule}: {self.text}" if self.text else self.rule


class Lifecycle(StrEnum):
    ACTIVE = "active"
    FUTURE_HIRE = "future_hire"
    LEAVER = "leaver"


# --------------------------------------------------------------------------- desired state


@dataclass(frozen=True, slots=True)
class DesiredUser:
    """A login role that should exist for one identity."""

    name: str
    stable_id: str
    username: str
    source: str
    lifecycle: Lifecycle
    lifecycle_reason: Reason
    valid_until: datetime | None
    memberships: Mapping[str, tuple[Reason, ...]]
    excluded: Mapping[str, Reason] = field(default_factory=dict)
    """Roles the rules grant but an access-review exclusion withholds (core/identity/exclusions.py): revoked."""

    @property
    def login(self) -> bool:
        return self.lifecycle is Lifecycle.ACTIVE


@dataclass(frozen=True, slots=True)
class DesiredState:
    users: Mapping[str, DesiredUser]
    groups: frozenset[str]
    sources: frozenset[str]
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """Suspect directory data that changes nothing (two people sharing an employee id)."""
    held: frozenset[str] = frozenset()
    """Role names nobody may touch this run (e.g. name collisions)."""
    frozen: frozenset[str] = frozenset()
    """Group roles whose memberships are neither granted nor revoked this run (granted by a
    rule whose group is ambiguous: core/identity/groupref.py)."""
    partial: frozenset[str] = frozenset()
    """Sources read only in part: their missing identities are not leavers this run."""
    contenders: Mapping[str, tuple[DesiredUser, ...]] = field(default_factory=dict)
    """Held role name -> the identities that collide on it (none of them in ``users``):
    the active ones keep what they have; a leaver among them still loses the role it owns."""


# --------------------------------------------------------------------------- actual state


class RoleKind(StrEnum):
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Marker:
    """The proof that provisioner owns a role (stored as the role comment)."""

    kind: RoleKind
    stable_id: str | None = None
    source: str | None = None
    instance: str | None = None
    """The installation (``[provisioner] instance``) that owns the role; None: a marker
    written before installations were named (claimed and upgraded by the first run)."""
    granted: frozenset[str] | None = None
    """The membership ledger of a login role: the groups provisioner itself granted it
    (docs/lifecycle.md); None: a marker written before the ledger existed."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "id": self.stable_id, "source": self.source}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.granted is not None:
            out["granted"] = sorted(self.granted)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], shared: dict[Any, Any] | None = None) -> Marker:
        """The inverse of :meth:`to_json`; ValueError/KeyError/TypeError on a malformed object.

        ``shared``: a table the caller keeps while it reads many roles (an inspect): equal
        source and installation names and equal ledgers become one object each, and so do
        ledgers equal to a membership set the caller put in it (a login role's ledger is
        usually its set of groups)."""
        kind = RoleKind(data["kind"])
        sid, src, inst, granted = data.get("id"), data.get("source"), data.get("instance"), data.get("granted")
        if granted is not None and (not isinstance(granted, list) or not all(isinstance(g, str) for g in granted)):
            raise ValueError("marker 'granted' must be a list of role names")
        src = str(src) if src is not None else None
        inst = str(inst) if inst is not None else None
        ledger = None
        if granted is not None:
            ledger = frozenset(granted if shared is None else (shared.setdefault(g, g) for g in granted))
        if shared is not None:
            src, inst = shared.setdefault(src, src), shared.setdefault(inst, inst)
            ledger = shared.setdefault(ledger, ledger) if ledger is not None else None
        return cls(kind, str(sid) if sid is not None else None, src, inst, ledger)


@dataclass(frozen=True, slots=True)
class ActualRole:
    name: str
    login: bool
    superuser: bool = False
    replication: bool = False
    bypassrls: bool = False
    createrole: bool = False
    createdb: bool = False
    valid_until: datetime | None = None
    marker: Marker | None = None
    member_of: frozenset[str] = frozenset()
    system: bool = False
    """Built-in role (pg_*, the bootstrap superuser)."""

    @property
    def managed(self) -> bool:
        return self.marker is not None

    def digest_row(self) -> list[Any]:
        """Every field, positionally (the fingerprint hashes one of these per role)."""
        m = self.marker
        return [
            self.name,
            self.login,
            self.superuser,
            self.replication,
            self.bypassrls,
            self.createrole,
            self.createdb,
            self.valid_until.isoformat() if self.valid_until else None,
            [m.kind, m.stable_id, m.source, m.instance, sorted(m.granted) if m.granted is not None else None]
            if m is not None
            else None,  # kind a StrEnum: dumped as its text
            sorted(self.member_of),
            self.system,
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "login": self.login,
            "superuser": self.superuser,
            "replication": self.replication,
            "bypassrls": self.bypassrls,
            "createrole": self.createrole,
            "createdb": self.createdb,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "marker": self.marker.to_json() if self.marker else None,
            "member_of": sorted(self.member_of),
            "system": self.system,
        }


@dataclass(frozen=True, slots=True)
class ActualState:
    """What a target's catalog says, read in one consistent snapshot."""

    target: str
    roles: Mapping[str, ActualRole]
    session_role: str
    sessions: Mapping[str, int] = field(default_factory=dict)
    """Open sessions per login role (the provisioner's own session not counted): a leaver's
    are ended where ``capabilities.session_termination``."""
    default_roles: Mapping[str, str] | None = None
    """Each account's DEFAULT ROLE (accounts without one absent); None: not read (a target
    without ``capabilities.default_roles``, or ``manage_default_role`` off), never planned."""
    server_version: str = ""
    """The server's own version text (diagnostics)."""
    privileges: PrivilegeSnapshot | None = None
    """Privileges of managed roles and the object inventory (None: not read)."""
    capabilities: Capabilities = POSTGRESQL
    """What the target can express (declared by its adapter)."""
    credential_drift: frozenset[str] = frozenset()
    """Managed accounts whose authentication differs from what provisioner set (a password set
    by hand); read where ``capabilities.password_drift``."""

    def fingerprint(
        self,
        scope: frozenset[str] | None = None,
        sources: frozenset[str] | None = None,
        memo: FingerprintMemo | None = None,
    ) -> str:
        """A digest of everything the diff may depend on; a saved plan is only
        applicable while the target still has this fingerprint.

        ``scope`` limits it to the named roles (those a plan changes or
        mentions) plus the managed login roles of ``sources`` (all sources when
        None) and the managed group roles those belong to, so roles unrelated to
        the plan -- created by hand or by another provisioner on a shared
        cluster -- do not make a saved plan stale; ``scope=None`` covers all.  ``memo``: the
        daemon's (engine/warm.py), which keeps the scope-independent part between runs."""
        head: dict[str, Any] = {"v": 4, "target": self.target, "scope": sorted(scope) if scope is not None else None}
        if self.privileges is not None:
            head["privileges"] = self.privileges.payload()
        h = hashlib.sha256(json.dumps(head, sort_keys=True, separators=(",", ":")).encode())
        if scope is None:
            self._hash_rows(h, self.roles)
        else:
            base, digest = self._base(sources, memo)
            h.update(digest)
            self._hash_rows(h, self._with_groups({n for n in scope if n in self.roles}) - base)
        return "sha256:" + h.hexdigest()

    def _hash_rows(self, h: Any, names: Iterable[str], rows: RowDigests | None = None) -> None:
        """Feed ``h`` the named roles' row digests (:func:`row_digest`), sorted by name.  ``rows``:
        the daemon's digests of the rows of roles it has seen (:class:`RowDigests`)."""
        roles = self.roles
        digest = rows.digest if rows is not None else row_digest
        for name in sorted(names):
            h.update(digest(roles[name]))

    def _with_groups(self, names: set[str]) -> set[str]:
        roles = self.roles
        groups = {g for name in names for g in roles[name].member_of}
        return names | {g for g in groups if g in roles}

    def _base(self, sources: frozenset[str] | None, memo: FingerprintMemo | None) -> tuple[frozenset[str], bytes]:
        """The part of every scoped fingerprint that does not depend on the scope: the
        managed login roles of ``sources`` and their groups, with the digest of their rows.
        With ``memo``, computed once per roles mapping and sources (a warm daemon plans
        against one reused state again)."""
        hit = memo.get(self, sources) if memo is not None else None
        if hit is not None:
            return hit
        user = RoleKind.USER
        names = self._with_groups(
            {
                name
                for name, role in self.roles.items()
                if (m := role.marker) is not None and m.kind is user and (sources is None or m.source in sources)
            }
        )
        rows = hashlib.sha256()
        self._hash_rows(rows, names, memo.rows(self.target) if memo is not None else None)
        base = (frozenset(names), rows.digest())
        if memo is not None:
            memo.put(self, sources, base)
        return base


def row_digest(role: ActualRole) -> bytes:
    """The SHA-256 of a role's digest row (compact JSON): what the fingerprint hashes per role
    (fingerprint v4; v3 hashed the rows' text, which the daemon then kept for every managed
    role: 22 MiB at 50,000 people, 32 bytes a role now)."""
    return hashlib.sha256(json.dumps(role.digest_row(), separators=(",", ":")).encode()).digest()


class RowDigests:
    """One target's role row digests (:func:`row_digest`), each kept while its role is the very
    same object: an incremental inspect keeps every unchanged role, so a warm run encodes only
    the roles that changed.  Holds only the roles of the last computation (``rotate``)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[ActualRole, bytes]] = {}
        self._now: dict[int, tuple[ActualRole, bytes]] = {}

    def digest(self, role: ActualRole) -> bytes:
        key = id(role)
        hit = self._last.get(key)  # the kept role stays alive: its address names no other object
        if hit is None or hit[0] is not role:
            hit = (role, row_digest(role))
        self._now[key] = hit
        return hit[1]

    def rotate(self) -> None:
        """Keep what the last computation used, forget the rest."""
        self._last, self._now = self._now, {}


class FingerprintMemo:
    """Per target and sources, the scope-independent part of the last scoped fingerprint
    (:meth:`ActualState._base`), valid while the target's roles mapping is the very same
    object.  A plain value the shell may keep (the daemon's WarmState) or drop; one entry
    per target and sources, so it never grows with the runs."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, frozenset[str] | None], tuple[Mapping[str, ActualRole], frozenset[str], bytes]] = {}
        self._rows: dict[str, RowDigests] = {}

    def rows(self, target: str) -> RowDigests:
        """The target's row digests, kept from the last computation of its base (a fresh inspect
        returns a new roles mapping, but its unchanged roles are the same objects)."""
        return self._rows.setdefault(target, RowDigests())

    def get(self, state: ActualState, sources: frozenset[str] | None) -> tuple[frozenset[str], bytes] | None:
        hit = self._by.get((state.target, sources))
        return (hit[1], hit[2]) if hit is not None and hit[0] is state.roles else None

    def put(self, state: ActualState, sources: frozenset[str] | None, base: tuple[frozenset[str], bytes]) -> None:
        self._by[(state.target, sources)] = (state.roles, *base)
        self.rows(state.target).rotate()
