"""The catalog in MariaDB's object model, pure (issue 20): what translates, what is implied,
what cannot be expressed -- each named by file, role and grant -- and wildcards as one
database-level grant."""

from __future__ import annotations

from dataclasses import replace

from provisioner.core.privileges.dialect import for_target
from provisioner.core.privileges.diff import PrivilegePolicy, plan_privileges
from provisioner.core.values.capabilities import MARIADB, MYSQL, POSTGRESQL
from provisioner.core.values.grants import FUNCTION, SEQUENCE, TABLE, Grant, Inventory, Obj, PrivilegeSnapshot
from provisioner.core.values.model import ActualRole, ActualState, Marker, RoleKind
from provisioner.core.values.plan import NoticeLevel
from tests.privileges.test_privilege_model import HEAD, catalog

TEXT = f"""
[role.desk]
{HEAD}extras = "revoke"
[[role.desk.grants]]
on = "database"
privileges = ["CONNECT", "TEMPORARY"]
[[role.desk.grants]]
on = "schema"
schema = "trading"
privileges = ["USAGE", "CREATE"]
[[role.desk.grants]]
on = "tables"
schema = "trading"
privileges = ["SELECT"]
[[role.desk.grants]]
on = "tables"
schema = "trading"
objects = ["orders"]
privileges = ["INSERT", "TRUNCATE"]
[[role.desk.grants]]
on = "sequences"
schema = "trading"
privileges = ["USAGE"]
[[role.desk.grants]]
on = "functions"
schema = "trading"
objects = ["approve(bigint)"]
privileges = ["EXECUTE"]
[[role.desk.grants]]
on = "columns"
schema = "trading"
objects = ["approvals"]
columns = ["status"]
privileges = ["UPDATE"]
"""

INVENTORY = Inventory(
    "",
    "",
    {"trading": ""},
    {"trading": ("approvals", "orders")},
    {"trading": ("orders_id_seq",)},
    {"trading": ("approve(bigint)", "approve(varchar)")},
    {("trading", "approvals"): ("id", "status"), ("trading", "orders"): ("id",)},
    database_level=True,
)


def _state(grants: frozenset[Grant] = frozenset()) -> ActualState:
    desk = ActualRole("desk", login=False, marker=Marker(RoleKind.GROUP))
    return ActualState("maria", {"desk": desk}, "svc", privileges=PrivilegeSnapshot("", {"": INVENTORY}, grants),
                       capabilities=MARIADB)


def test_postgresql_and_mysql_keep_the_catalog_as_written() -> None:
    model, problems = catalog(TEXT)
    assert problems == []
    assert for_target(model, POSTGRESQL) == (model, ())
    assert for_target(model, MYSQL) == (model, ())  # MySQL 8: not translated (object_privileges False)


def test_mariadb_translation_names_file_role_and_grant() -> None:
    model, _ = catalog(TEXT)
    ours, notices = for_target(model, MARIADB)
    found = {(n.level, n.code, n.message) for n in notices}
    w = "roles.toml:2 [role.desk]"
    expected = [
        (NoticeLevel.INFO, "privilege_implied", f"{w} grants[0]: CONNECT on database needs no grant on MariaDB"),
        (NoticeLevel.ERROR, "privilege_inexpressible", f"{w} grants[0]: TEMPORARY on database cannot be expressed"),
        (NoticeLevel.INFO, "privilege_implied", f"{w} grants[1]: USAGE on schema trading needs no grant"),
        (NoticeLevel.INFO, "privilege_translated", f"{w} grants[1]: CREATE on schema trading is granted as CREATE"),
        (NoticeLevel.ERROR, "privilege_inexpressible", f"{w} grants[3]: TRUNCATE on table trading.orders cannot"),
        (
            NoticeLevel.INFO,
            "privilege_translated",
            f"{w} grants[4]: USAGE on all sequences in schema trading is granted as SELECT, INSERT on MariaDB",
        ),
    ]
    for level, code, head in expected:
        assert any(f[:2] == (level, code) and f[2].startswith(head) for f in found), (head, found)
    assert len([n for n in notices if n.level is NoticeLevel.ERROR]) == 2
    kept = {(s.index, s.kind, s.privileges) for s in ours.roles["desk"].grants}
    assert kept == {
        (1, "schema", ("CREATE",)),
        (2, TABLE, ("SELECT",)),
        (3, TABLE, ("INSERT",)),  # TRUNCATE dropped, never widened to DROP
        (4, SEQUENCE, ("SELECT", "INSERT")),
        (5, FUNCTION, ("EXECUTE",)),
        (6, "column", ("UPDATE",)),
    }  # grants[0] is gone entirely: CONNECT is implied, TEMPORARY inexpressible
    assert ours.roles["desk"].manages_privileges and ours.roles["desk"].extras == "revoke"


def test_wildcards_are_one_database_level_grant_and_sequences_stay_per_object() -> None:
    model, _ = catalog(TEXT)
    ours, _ = for_target(model, MARIADB)
    changes, notices = plan_privileges(ours, _state(), PrivilegePolicy())
    assert [n.message for n in notices] == []
    assert sorted(c.describe("mariadb") for c in changes) == [
        "grant CREATE on schema trading to desk",
        "grant EXECUTE on function trading.approve(bigint) to desk",  # the exact signature only
        "grant INSERT on table trading.orders to desk",
        "grant SELECT on all tables in schema trading to desk",  # db.*: now and later, no default privileges
        "grant SELECT, INSERT on sequence trading.orders_id_seq to desk",  # db.* would cover every table
        "grant UPDATE on column trading.approvals(status) to desk",
    ]


def test_extras_on_mariadb_are_revoked_and_held_grants_not_regranted() -> None:
    model, _ = catalog(TEXT)
    ours, _ = for_target(model, MARIADB)
    held = frozenset({
        Grant("desk", Obj("", TABLE, "trading", "*"), "SELECT"),
        Grant("desk", Obj("", TABLE, "trading", "*"), "DELETE"),  # by hand, on every table
        Grant("desk", Obj("", TABLE, "trading", "orders"), "DROP"),  # by hand: what TRUNCATE would need
    })
    changes, _ = plan_privileges(ours, _state(held), PrivilegePolicy())
    described = sorted(c.describe("mariadb") for c in changes)
    assert "grant SELECT on all tables in schema trading to desk" not in described
    assert "revoke DELETE on all tables in schema trading from desk" in described
    assert "revoke DROP on table trading.orders from desk" in described


def test_objects_without_a_database_read_naturally() -> None:
    assert Obj("", TABLE, "trading", "orders").describe() == "table trading.orders"
    assert Obj("", "database").describe() == "every database (*.*)"
    assert Obj("db", TABLE, "trading", "orders").describe() == "table trading.orders in database db"
    assert replace(INVENTORY, database_level=False).database_level is False
