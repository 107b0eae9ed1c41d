"""Pure pieces of issue 15: instants, transforms, escaping, naming policy."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from provisioner.core.identity.lifecycle import parse_instant
from provisioner.core.identity.naming import NamingPolicy, assign_names, role_name
from provisioner.core.values.model import Identity
from provisioner.core.values.textsafe import escape_text
from provisioner.sources.attributes import Transform, apply_transform
from provisioner.unicode_data import scripts

LONDON = ZoneInfo("Europe/London")


def test_leave_date_ends_with_the_last_working_day_in_the_zone() -> None:
    assert parse_instant("2025-09-30", LONDON, leave=True) == datetime(2025, 9, 30, 23, tzinfo=UTC)
    assert parse_instant("2025-12-31", LONDON, leave=True) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_instant("2025-12-31", LONDON, time(18), leave=True) == datetime(2025, 12, 31, 18, tzinfo=UTC)
    assert parse_instant("2025-09-30", LONDON) == datetime(2025, 9, 29, 23, tzinfo=UTC)  # a hire: start of day
    assert parse_instant("2026-12-06T16:20:03+00:00", LONDON, leave=True) == datetime(2026, 12, 6, 16, 20, 3, tzinfo=UTC)
    assert parse_instant("2026-07-06T16:20:03", LONDON, leave=True) == datetime(2026, 7, 6, 15, 20, 3, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "31/12/2020", "2020-13-45", "leave-date:2025-09-30", "", "2025-09"])
def test_unusable_values_are_no_instant(text: str) -> None:
    assert parse_instant(text, LONDON, leave=True) is None


def test_transform_extracts_and_parses() -> None:
    t = Transform(__import__("re").compile(r"leave-date:(\S+)"), ("%d/%m/%Y", "%Y-%m-%d"))
    assert apply_transform("leave_date", ["Contractor", "leave-date:30/09/2025"], t) == ("2025-09-30",)
    assert apply_transform("leave_date", ["leave-date:2025-09-30"], t) == ("2025-09-30",)
    assert apply_transform("leave_date", ["leave-date:soon"], t) == ("soon",), "kept raw: fails safe later"
    assert apply_transform("leave_date", ["Contractor"], t) == ()


def test_escape_text_makes_control_and_bidi_visible() -> None:
    assert escape_text("ok zoë") == "ok zoë"
    assert escape_text("a\nb\u202ec\x1b[31m\u200b") == "a\\x0ab\\u202ec\\x1b[31m\\u200b"


def _ident(username: str, sid: str) -> Identity:
    return Identity(sid, username, "src")


def test_naming_transliterates_and_refuses_lookalikes() -> None:
    tables = scripts()
    ascii_policy = NamingPolicy(scripts=tables)
    assert role_name(_ident("Γιάννης", "1"), ascii_policy) == "giannis"
    assert role_name(_ident("zoë.müller", "2"), ascii_policy) == "zoe_muller"
    assert role_name(_ident("---", "3"), NamingPolicy(prefix="p_", scripts=tables)) is None
    uni = NamingPolicy(charset="unicode", scripts=tables)
    assert role_name(_ident("Zoë.Müller", "4"), uni) == "zoë_müller"
    naming = assign_names([_ident("alice", "a"), _ident("\u0430lice", "b"), _ident("bob", "c")], uni)
    assert naming.names == {"c": "bob"}
    assert naming.held == {"alice", "\u0430lice"}
    assert any("confusable role names" in p for p in naming.problems)


def test_lookalike_notice_spells_out_what_differs() -> None:
    """Two confusable names print the same: the notice names each non-ASCII character
    (code point and Unicode name), so an operator can tell which person is which."""
    uni = NamingPolicy(charset="unicode", scripts=scripts())
    naming = assign_names([_ident("alice", "a"), _ident("\u0430lice", "b")], uni)
    (problem,) = [p for p in naming.problems if "confusable role names" in p]
    assert "U+0430 CYRILLIC SMALL LETTER A" in problem, problem
    assert "'alice' ('alice', src:a)" in problem, "an ASCII name is shown as it is"
