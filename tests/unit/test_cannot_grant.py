"""Inventory.cannot_grant: a column without an ACL of its own follows its table."""

from __future__ import annotations

from provisioner.core.values.grants import COLUMN, TABLE, Inventory, Obj


def test_column_follows_its_table_unless_it_has_its_own_acl() -> None:
    table = Obj("db", TABLE, "s", "t")
    own = Obj("db", COLUMN, "s", "t", "a")  # an ACL of its own: UPDATE grantable on it
    inv = Inventory("db", ungrantable={table: frozenset({"SELECT", "UPDATE"}), own: frozenset({"SELECT"})})
    assert inv.cannot_grant(table, "UPDATE")
    assert inv.cannot_grant(Obj("db", COLUMN, "s", "t", "b"), "UPDATE")
    assert not inv.cannot_grant(own, "UPDATE")
    assert inv.cannot_grant(own, "SELECT")
    assert not inv.cannot_grant(Obj("db", TABLE, "s", "other"), "SELECT")
