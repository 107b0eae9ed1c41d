"""Changes and plans: printable, serialisable values.

A :class:`Plan` holds one :class:`TargetPlan` per target, each carrying the
fingerprint of the actual state it was computed from.  The JSON form is
documented in ``docs/plan-format.md``; ``FORMAT_VERSION`` changes when it does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from provisioner.core.values.model import Reason

FORMAT_VERSION = 1


class ChangeKind(StrEnum):
    CREATE_ROLE = "create_role"
    ALTER_ROLE = "alter_role"
    GRANT_MEMBERSHIP = "grant_membership"
    REVOKE_MEMBERSHIP = "revoke_membership"
    SET_MARKER = "set_marker"
    RENAME_ROLE = "rename_role"
    TERMINATE_SESSIONS = "terminate_sessions"
    DROP_ROLE = "drop_role"
    GRANT_PRIVILEGE = "grant_privilege"
    REVOKE_PRIVILEGE = "revoke_privilege"


# Order in which changes of one target are executed inside its transaction.
EXECUTION_ORDER: tuple[ChangeKind, ...] = (
    ChangeKind.RENAME_ROLE,  # first: a name a rename frees may be a newcomer's (core/reconcile/diff.py)
    ChangeKind.CREATE_ROLE,
    ChangeKind.ALTER_ROLE,
    ChangeKind.TERMINATE_SESSIONS,
    ChangeKind.REVOKE_MEMBERSHIP,
    ChangeKind.REVOKE_PRIVILEGE,
    ChangeKind.GRANT_PRIVILEGE,
    ChangeKind.GRANT_MEMBERSHIP,
    ChangeKind.SET_MARKER,
    ChangeKind.DROP_ROLE,
)


@dataclass(frozen=True, slots=True)
class Change:
    """One statement-sized change on one target.

    ``params`` holds kind-specific values (``login``, ``valid_until``,
    ``group``, ``marker`` ...), JSON-compatible scalars only, as sorted pairs
    so that a change is hashable and compares by value.  ``before`` and
    ``after`` describe the affected state for the audit trail.
    """

    kind: ChangeKind
    role: str
    reasons: tuple[Reason, ...]
    params: tuple[tuple[str, Any], ...] = ()
    before: tuple[tuple[str, Any], ...] = ()
    after: tuple[tuple[str, Any], ...] = ()

    def param(self, name: str, default: Any = None) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        return default

    def describe(self, dialect: str = "postgresql") -> str:
        """One line in the target's own terms (``dialect``: ``postgresql``, ``mariadb`` or ``mysql``)."""
        p = dict(self.params)
        k = self.kind
        if dialect != "postgresql" and k in _ACCOUNT_WORDS:
            return _ACCOUNT_WORDS[k](self, p)
        if k is ChangeKind.CREATE_ROLE:
            login = "LOGIN" if p.get("login") else "NOLOGIN"
            return f"create role {self.role} ({p.get('role_kind')}, {login})"
        if k is ChangeKind.ALTER_ROLE:
            parts = []
            if "login" in p:
                parts.append("LOGIN" if p["login"] else "NOLOGIN")
            if "valid_until" in p:
                parts.append(f"VALID UNTIL {p['valid_until'] or 'infinity'}")
            if "default_role" in p:
                parts.append(f"DEFAULT ROLE {p['default_role'] or 'NONE'}")
            return f"alter role {self.role} {' '.join(parts)}"
        if k is ChangeKind.GRANT_MEMBERSHIP:
            return f"grant {p['group']} to {self.role}"
        if k is ChangeKind.REVOKE_MEMBERSHIP:
            return f"revoke {p['group']} from {self.role}"
        if k is ChangeKind.RENAME_ROLE:
            return f"rename role {p['old_name']} to {self.role}"
        if k is ChangeKind.SET_MARKER:
            return f"mark role {self.role} as managed" if p.get("marker") else f"unmark role {self.role}"
        if k is ChangeKind.TERMINATE_SESSIONS:
            return f"terminate sessions of {self.role}"
        if k is ChangeKind.DROP_ROLE:
            return f"drop role {self.role}"
        if k is ChangeKind.GRANT_PRIVILEGE:
            return f"grant {p.get('privileges')} on {p.get('object')} to {self.role}"
        if k is ChangeKind.REVOKE_PRIVILEGE:
            return f"revoke {p.get('privileges')} on {p.get('object')} from {self.role}"
        extra = " ".join(f"{key}={value}" for key, value in self.params)
        return f"{k.value.replace('_', ' ')} {self.role} {extra}".strip()

    def to_json(self, dialect: str = "postgresql") -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "role": self.role,
            "params": dict(self.params),
            "reasons": [r.to_json() for r in self.reasons],
            "before": dict(self.before),
            "after": dict(self.after),
            "summary": self.describe(dialect),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            kind=ChangeKind(data["kind"]),
            role=str(data["role"]),
            reasons=tuple(Reason.from_json(r) for r in data.get("reasons", ())),
            params=_pairs(data.get("params")),
            before=_pairs(data.get("before")),
            after=_pairs(data.get("after")),
        )


def _pairs(data: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((data or {}).items()))


def make_change(
    kind: ChangeKind,
    role: str,
    reasons: Iterable[Reason],
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    **params: Any,
) -> Change:
    return Change(kind, role, tuple(reasons), _pairs(params), _pairs(before), _pairs(after))


class NoticeLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the operator should read that is not a change: drift left in
    place, a refused request, a scheduled disable, a name collision."""

    level: NoticeLevel
    code: str
    message: str
    role: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level.value, "code": self.code, "message": self.message, "role": self.role}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notice:
        return cls(NoticeLevel(data["level"]), str(data["code"]), str(data["message"]), data.get("role"))


@dataclass(slots=True)
class Draft:
    """Changes and notices being collected by one planning stage."""

    changes: list[Change] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    group_params: dict[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    """One ``(("group", name),)`` per group role: a first sync plans 100,000s of membership
    grants into a few thousand groups, each with these parameters (26 MB at 50,000 people)."""

    def note(self, level: NoticeLevel, code: str, message: str, role: str | None = None) -> None:
        self.notices.append(Notice(level, code, message, role))


_SCOPE_KEYS = frozenset({"group", "old_name", "grantee", "reassign_to"})
"""The parameters of a change that name a role."""


def plan_scope(changes: Iterable[Change], notices: Iterable[Notice] = ()) -> frozenset[str]:
    """Every role name a target plan changes or mentions (for its fingerprint)."""
    names: set[str] = set()
    add = names.add
    for c in changes:
        add(c.role)
        for key, value in c.params:  # one pass (keys are unique: params come from a mapping)
            if key in _SCOPE_KEYS and isinstance(value, str):
                add(value)
    names.update(n.role for n in notices if n.role)
    return frozenset(names)


READBACK_MOST = 2000
"""Beyond this many roles a named read-back costs more than reading the whole catalog
(PostgreSQL 15, measured: 10,000 named roles 0.5 s, 100,000 named 5.2 s, the whole
100,000-role catalog 3.2 s)."""


def readback_scope(changes: Iterable[Change], most: int = READBACK_MOST) -> frozenset[str] | None:
    """The roles to read back to verify ``changes`` (each change's role, a rename's old
    name); None -- the whole catalog -- when privileges changed (read per database) or
    when more than ``most`` roles are named."""
    changes = tuple(changes)
    if any(c.kind in (ChangeKind.GRANT_PRIVILEGE, ChangeKind.REVOKE_PRIVILEGE) for c in changes):
        return None
    names = frozenset(n for c in changes for n in (c.role, c.param("old_name")) if isinstance(n, str))
    return names if len(names) <= most else None


def execution_order(changes: Iterable[Change]) -> tuple[Change, ...]:
    rank = {kind: i for i, kind in enumerate(EXECUTION_ORDER)}
    ordered = sorted(changes, key=lambda c: (rank[c.kind], c.role, c.params))
    renames = [c for c in ordered if c.kind is ChangeKind.RENAME_ROLE]
    if len(renames) < 2:
        return tuple(ordered)
    return (*_rename_chains(renames), *(c for c in ordered if c.kind is not ChangeKind.RENAME_ROLE))


def _rename_chains(renames: list[Change]) -> list[Change]:
    """Renames in an order where a rename into a name comes after the rename that frees it."""
    out: list[Change] = []
    pending = list(renames)
    while pending:
        freed = {str(c.param("old_name")) for c in pending}
        ready = [c for c in pending if c.role not in freed] or pending  # a cycle is never planned
        out += ready
        pending = [c for c in pending if c not in ready]
    return out



def _mysql_create(c: Change, p: dict[str, Any]) -> str:
    if p.get("role_kind") == "group":
        return f"create role {c.role} (group)"
    return f"create user {c.role} ({p.get('role_kind')}, ACCOUNT {'UNLOCK' if p.get('login') else 'LOCK'})"


def _mysql_alter(c: Change, p: dict[str, Any]) -> str:
    parts = []
    if "login" in p:
        parts.append("ACCOUNT UNLOCK" if p["login"] else "ACCOUNT LOCK")
    if "default_role" in p:
        parts.append(f"DEFAULT ROLE {p['default_role'] or 'NONE'}")
    if "valid_until" in p:  # no account expiry: the instant is recorded beside the account
        parts.append(f"(access ends {p['valid_until']})" if p["valid_until"] else "(no end of access)")
    return f"alter user {c.role} {' '.join(parts)}".rstrip()


_ACCOUNT_WORDS: dict[ChangeKind, Callable[[Change, dict[str, Any]], str]] = {
    ChangeKind.CREATE_ROLE: _mysql_create,
    ChangeKind.ALTER_ROLE: _mysql_alter,
    ChangeKind.TERMINATE_SESSIONS: lambda c, p: f"kill sessions of {c.role}",
    ChangeKind.RENAME_ROLE: lambda c, p: f"rename user {p['old_name']} to {c.role}",
}
"""MariaDB / MySQL words for what differs from PostgreSQL's (accounts, ACCOUNT LOCK, KILL)."""

@dataclass(frozen=True, slots=True)
class TargetPlan:
    target: str
    fingerprint: str
    changes: tuple[Change, ...]
    notices: tuple[Notice, ...] = ()
    dialect: str = "postgresql"
    """The target's terms for the plan text (:attr:`Capabilities.dialect`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "fingerprint": self.fingerprint,
            "changes": [c.to_json(self.dialect) for c in self.changes],
            "notices": [n.to_json() for n in self.notices],
            **({"dialect": self.dialect} if self.dialect != "postgresql" else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetPlan:
        return cls(
            target=str(data["target"]),
            fingerprint=str(data["fingerprint"]),
            changes=tuple(Change.from_json(c) for c in data.get("changes", ())),
            notices=tuple(Notice.from_json(n) for n in data.get("notices", ())),
            dialect=str(data.get("dialect", "postgresql")),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    created_at: datetime
    config_digest: str
    targets: tuple[TargetPlan, ...]
    identities_seen: int = 0
    sources: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(c for t in self.targets for c in t.changes)

    @property
    def has_changes(self) -> bool:
        return any(t.changes for t in self.targets)

    def for_target(self, name: str) -> TargetPlan | None:
        return next((t for t in self.targets if t.target == name), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for change in self.changes:
            out[change.kind.value] = out.get(change.kind.value, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        body = {
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at.isoformat(),
            "config_digest": self.config_digest,
            "identities_seen": self.identities_seen,
            "sources": list(self.sources),
            "summary": self.counts(),
            "meta": dict(self.meta),
            "targets": [t.to_json() for t in self.targets],
        }
        body["plan_digest"] = digest(body)
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"plan format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        expected = data.get("plan_digest")
        body = {k: v for k, v in data.items() if k not in ("plan_digest", "signature")}  # signature: store/plansign
        if expected != digest(body):
            raise ValueError("plan_digest does not match the plan's content: the file was edited")
        return cls(
            created_at=datetime.fromisoformat(str(data["created_at"])),
            config_digest=str(data["config_digest"]),
            targets=tuple(TargetPlan.from_json(t) for t in data["targets"]),
            identities_seen=int(data.get("identities_seen", 0)),
            sources=tuple(data.get("sources", ())),
            meta=dict(data.get("meta") or {}),
        )


def digest(body: Mapping[str, Any]) -> str:
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def transactions(changes: Sequence[Change], limit: int) -> list[tuple[Change, ...]]:
    """Split one target's changes into transactions of at most ``limit`` changes.

    A plan within the limit (or ``limit`` 0) stays one transaction.  Larger
    plans (PostgreSQL's lock table cannot hold tens of thousands of new roles in
    one transaction) are split so that every prefix is safe: first the group
    roles being created, then the other changes of group roles (privileges,
    inheritance), then everyone else; one role's changes are never split, so a
    mover's revokes and grants still commit together.
    """
    if limit <= 0 or len(changes) <= limit:
        return [tuple(changes)] if changes else []
    groups = {str(c.param("group")) for c in changes if c.kind in (ChangeKind.GRANT_MEMBERSHIP,)}
    groups |= {c.role for c in changes if c.kind is ChangeKind.CREATE_ROLE and c.param("role_kind") == "group"}
    groups |= {c.role for c in changes if c.kind in (ChangeKind.GRANT_PRIVILEGE, ChangeKind.REVOKE_PRIVILEGE)}
    creates = [c for c in changes if c.kind is ChangeKind.CREATE_ROLE and c.role in groups]
    rest = [c for c in changes if not (c.kind is ChangeKind.CREATE_ROLE and c.role in groups)]
    by_role: dict[str, list[Change]] = {}
    for c in rest:
        by_role.setdefault(c.role, []).append(c)
    ordered = sorted(by_role, key=lambda r: (r not in groups, r))
    out = [tuple(creates[i : i + limit]) for i in range(0, len(creates), limit)]
    chunk: list[Change] = []
    for role in ordered:
        bucket = by_role[role]
        if chunk and len(chunk) + len(bucket) > limit:
            out.append(execution_order(chunk))
            chunk = []
        chunk.extend(bucket)
    if chunk:
        out.append(execution_order(chunk))
    return out
