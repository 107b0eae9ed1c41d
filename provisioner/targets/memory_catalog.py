"""The in-memory target's catalog and the statements each change runs
(:mod:`provisioner.targets.memory`), in the order of the adapter its capabilities
describe: PostgreSQL's, or MariaDB's where ``ordered``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from provisioner.core.values.model import ActualRole, Marker
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.targets.base import required


class Refused(Exception):
    """The "server" refused one statement (the change is isolated)."""


@dataclass
class Catalog:
    roles: dict[str, ActualRole] = field(default_factory=dict)
    """Every role, its ``marker`` field unused (markers live beside it, as MariaDB's rows)."""
    markers: dict[str, Marker] = field(default_factory=dict)
    default_roles: dict[str, str] = field(default_factory=dict)

    def copy(self) -> Catalog:
        return Catalog(dict(self.roles), dict(self.markers), dict(self.default_roles))

    def role(self, name: str) -> ActualRole:
        role = self.roles.get(name)
        if role is None:
            raise Refused(f'role "{name}" does not exist')
        return role


Statement = Callable[[Catalog], None]


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _marker(value: Any) -> Marker:
    if not isinstance(value, Mapping):
        raise Refused(f"marker must be an object, got {type(value).__name__}")
    try:
        return Marker.from_json(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"malformed marker: {exc}") from exc


class Statements:
    """The statements of each change on a :class:`Catalog`; ``sessions`` is the target's
    (open sessions are no part of any transaction)."""

    def __init__(self, ordered: bool, session_role: str, sessions: dict[str, int]) -> None:
        self._ordered = ordered
        self.session_role = session_role
        self.sessions = sessions

    def of(self, change: Change) -> list[tuple[bool, Statement]]:
        try:
            return self._compose(change)
        except (ValueError, TypeError) as exc:
            raise Refused(f"change {change.describe()} cannot be applied: {exc}") from exc

    def _end_sessions(self, name: str) -> None:
        """Not transactional on any server (``pg_terminate_backend``, ``KILL``)."""
        self.sessions.pop(name, None)

    def _compose(self, change: Change) -> list[tuple[bool, Statement]]:
        kind, name, ordered = change.kind, change.role, self._ordered
        if kind is ChangeKind.CREATE_ROLE:
            marker = _marker(change.param("marker"))
            create = (True, lambda cat: self._create(cat, change, marker))
            put = (False, lambda cat: cat.markers.__setitem__(name, marker))
            return [put, create] if ordered else [create, put]
        if kind is ChangeKind.ALTER_ROLE:
            return [(True, lambda cat: self._alter(cat, change))]
        if kind in (ChangeKind.GRANT_MEMBERSHIP, ChangeKind.REVOKE_MEMBERSHIP):
            group = str(required(change, "group"))
            grant = kind is ChangeKind.GRANT_MEMBERSHIP
            member = (True, lambda cat: self._membership(cat, name, group, grant))
            ledger = (False, lambda cat: self._ledger(cat, name, change.param("marker")))
            if change.param("marker") is None:
                return [member]
            return [ledger, member] if ordered and grant else [member, ledger]
        if kind is ChangeKind.SET_MARKER:
            return [(True, lambda cat: self._set_marker(cat, name, change.param("marker")))]
        if kind is ChangeKind.RENAME_ROLE:
            old = str(required(change, "old_name"))
            rename = (True, lambda cat: self._rename(cat, old, name))
            if not ordered:
                return [rename]
            return [(False, lambda cat: self._copy_marker(cat, old, name)), rename,
                    (False, lambda cat: _unmark(cat, old))]
        if kind is ChangeKind.TERMINATE_SESSIONS:
            return [(True, lambda cat: self._end_sessions(name))]
        if kind is ChangeKind.DROP_ROLE:
            drop = (True, lambda cat: self.drop_role(cat, name))
            if ordered:
                return [drop, (False, lambda cat: _unmark(cat, name))]
            return [(False, lambda cat: _exists(cat, name)), (False, _nothing), drop]  # REASSIGN, DROP OWNED
        raise Refused(
            f"change {change.describe()} cannot be applied: the in-memory target does not model "
            f"{kind.value!r} (object privileges)"
        )

    def _create(self, cat: Catalog, change: Change, marker: Marker) -> None:
        name = change.role
        if name in cat.roles:
            if self._ordered:
                cat.markers.pop(name, None)  # a namesake appeared since the plan: not ours
                raise Refused(f"Operation CREATE USER failed for '{name}'")
            raise Refused(f'role "{name}" already exists')
        group = change.param("role_kind") == "group"
        login = bool(change.param("login")) and not (self._ordered and group)
        cat.roles[name] = ActualRole(name, login, valid_until=_instant(change.param("valid_until")))
        if not self._ordered:
            cat.markers[name] = marker
        elif group:  # MariaDB grants a new role to its creator WITH ADMIN OPTION
            me = cat.role(self.session_role)
            cat.roles[self.session_role] = replace(me, member_of=me.member_of | {name})

    def _alter(self, cat: Catalog, change: Change) -> None:
        role = cat.role(change.role)
        if has(change, "default_role"):
            default = change.param("default_role")
            if default is None:
                cat.default_roles.pop(change.role, None)
            elif default not in role.member_of:
                raise Refused(f"Invalid role specification `{default}`")
            else:
                cat.default_roles[change.role] = str(default)
        if change.param("login") is not None:
            role = replace(role, login=bool(change.param("login")))
        if has(change, "valid_until"):
            role = replace(role, valid_until=_instant(change.param("valid_until")))
        cat.roles[change.role] = role

    def _membership(self, cat: Catalog, name: str, group: str, grant: bool) -> None:
        cat.role(group)
        role = cat.role(name)
        if grant:
            cat.roles[name] = replace(role, member_of=role.member_of | {group})
        elif group in role.member_of:
            cat.roles[name] = replace(role, member_of=role.member_of - {group})
            if cat.default_roles.get(name) == group:
                del cat.default_roles[name]
        elif self._ordered:
            raise Refused(f"Cannot revoke role '{group}' from: '{name}'")

    def _ledger(self, cat: Catalog, name: str, value: Any) -> None:
        """PostgreSQL: the whole marker as the COMMENT; MariaDB: the ledger row, read only
        beside a marker row."""
        marker = _marker(value)
        if not self._ordered:
            cat.role(name)
            cat.markers[name] = marker
        elif name in cat.markers:
            cat.markers[name] = replace(cat.markers[name], instance=marker.instance, granted=marker.granted)

    def _set_marker(self, cat: Catalog, name: str, value: Any) -> None:
        if not self._ordered:
            cat.role(name)
        if value is None:
            cat.markers.pop(name, None)
        else:
            cat.markers[name] = _marker(value)

    def _copy_marker(self, cat: Catalog, old: str, new: str) -> None:
        if old in cat.markers:
            cat.markers[new] = cat.markers[old]

    def _rename(self, cat: Catalog, old: str, new: str) -> None:
        role = cat.role(old)
        if new in cat.roles:
            raise Refused(f'role "{new}" already exists')
        del cat.roles[old]
        cat.roles[new] = replace(role, name=new)
        if not self._ordered and old in cat.markers:
            cat.markers[new] = cat.markers.pop(old)
        for n, r in list(cat.roles.items()):
            if old in r.member_of:
                cat.roles[n] = replace(r, member_of=(r.member_of - {old}) | {new})
        if old in cat.default_roles:
            cat.default_roles[new] = cat.default_roles.pop(old)
        if old in self.sessions:
            self.sessions[new] = self.sessions.pop(old)

    def drop_role(self, cat: Catalog, name: str) -> None:
        if name not in cat.roles:
            if self._ordered:
                return  # DROP USER IF EXISTS
            raise Refused(f'role "{name}" does not exist')
        del cat.roles[name]
        if not self._ordered:
            cat.markers.pop(name, None)  # the COMMENT goes with the role
        cat.default_roles.pop(name, None)
        for n, r in list(cat.roles.items()):
            if name in r.member_of:
                cat.roles[n] = replace(r, member_of=r.member_of - {name})
        for n, d in list(cat.default_roles.items()):
            if d == name:
                del cat.default_roles[n]


def _unmark(cat: Catalog, name: str) -> None:
    cat.markers.pop(name, None)


def _exists(cat: Catalog, name: str) -> None:
    cat.role(name)


def _nothing(cat: Catalog) -> None:
    """A statement about what the in-memory target does not model (owned objects)."""


def has(change: Change, key: str) -> bool:
    return any(k == key for k, _ in change.params)


