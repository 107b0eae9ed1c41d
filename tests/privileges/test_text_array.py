"""The managed-role list is sent to PostgreSQL as one ``text[]`` literal
(pg_privileges.text_array): every name must come back exactly, whatever it holds."""

from __future__ import annotations

from provisioner.targets.pg_privileges import text_array
from tests.support import pg

NAMES = ["plain", 'quo"te', "back\\slash", "com,ma", "{brace}", "sp ace", "NULL", "ünï ✓", "'single'", "\\\"both"]


def test_names_round_trip_through_a_text_array_literal() -> None:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT %s::text[]", (text_array(NAMES),)).fetchone()
        assert row is not None and row[0] == NAMES
        empty = conn.execute("SELECT %s::text[]", (text_array([]),)).fetchone()
        assert empty is not None and empty[0] == []
        found = conn.execute("SELECT 'NULL' = ANY(%s::text[]), 'x' = ANY(%s::text[])", (text_array(NAMES),) * 2)
        assert found.fetchone() == (True, False)
