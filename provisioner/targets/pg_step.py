"""One PostgreSQL change and the statements that carry it out (composed by
:mod:`provisioner.targets.pg_apply`, merged by :mod:`provisioner.targets.pg_bulk`).

A first sync composes tens of thousands of statements, so they are cheap to build:
a :class:`Statement` is constant SQL (``bytes``, this package's own text, never
data) between role names (``str``, escaped as :class:`psycopg.sql.Identifier`)
and literals (:class:`psycopg.sql.Literal`).  :meth:`Statement.render` escapes each
role name once per apply (a dict the caller owns, see ``BatchRunner``); the bytes
are exactly what ``sql.Composed`` of the same parts gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from psycopg.abc import AdaptContext

from provisioner.core.values import marker as marker_codec
from provisioner.core.values.model import Marker
from provisioner.core.values.plan import Change

Part = bytes | str | sql.Composable
"""Constant SQL (``bytes``), a role name (``str``) or a literal (any other Composable)."""

Names = dict[str, bytes]
"""Role name -> its escaped identifier, for one connection (one apply)."""


def escape(name: str, names: Names, context: AdaptContext | None) -> bytes:
    """``name`` as ``sql.Identifier(name)`` renders it in ``context``, escaped once per ``names``."""
    out = names.get(name)
    if out is None:
        out = names[name] = sql.Identifier(name).as_bytes(context)
    return out


class Statement(sql.Composable):
    """One statement: constant SQL, role names and literals, concatenated."""

    _obj: tuple[Part, ...]

    def __init__(self, *parts: Part) -> None:
        super().__init__(parts)

    def render(self, names: Names, context: AdaptContext | None) -> bytes:
        """The statement's bytes, each role name escaped once per ``names``."""
        out: list[bytes] = []
        for part in self._obj:
            if isinstance(part, bytes):
                out.append(part)
            elif isinstance(part, str):
                out.append(escape(part, names, context))
            else:
                out.append(part.as_bytes(context))
        return b"".join(out)

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        return self.render({}, context)


def render(statement: sql.Composable, names: Names, context: AdaptContext | None) -> bytes:
    """Any statement's bytes (a :class:`Statement`'s role names escaped once per ``names``)."""
    if isinstance(statement, Statement):
        return statement.render(names, context)
    return statement.as_bytes(context)


def comment(role: str, text: str | None) -> Statement:
    return Statement(b"COMMENT ON ROLE ", role, b" IS ", sql.Literal(text))


@dataclass(frozen=True, slots=True)
class Step:
    """One change and the statements that carry it out."""

    change: Change
    own: tuple[sql.Composable, ...]
    """The change's statements, without the ledger."""
    merge: tuple[str, str] | None = None
    """``("GRANT" | "REVOKE", group)`` for a plain membership change that may
    share one multi-member statement with others (``pg_bulk``)."""
    ledger: Marker | None = None
    """A membership change's member marker with its updated ledger (issue 13), written
    by a ``COMMENT ON ROLE`` after ``own``; composed only when it is sent
    (:meth:`ledger_statement`: ``pg_bulk`` leaves out the ones a later step supersedes)."""

    def ledger_statement(self) -> Statement:
        assert self.ledger is not None
        return comment(self.change.role, marker_codec.encode(self.ledger))

    @property
    def statements(self) -> tuple[sql.Composable, ...]:
        """Every statement of the change, in order (the ledger last)."""
        return self.own if self.ledger is None else (*self.own, self.ledger_statement())

    @property
    def size(self) -> int:
        """``len(self.statements)``, without composing the ledger."""
        return len(self.own) + (self.ledger is not None)
