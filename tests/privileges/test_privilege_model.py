"""The catalog privilege model, pure: validation, inheritance, effective privileges, diff."""

from __future__ import annotations

from provisioner.core.privileges.catalog import build_catalog
from provisioner.core.privileges.diff import PrivilegePolicy, plan_privileges
from provisioner.core.privileges.spec import (
    EXTRA_KEYS,
    PrivilegeCatalog,
    build_privilege_catalog,
    covers,
    effective_privileges,
)
from provisioner.core.values.grants import Grant, Inventory, Obj, PrivilegeSnapshot
from provisioner.core.values.model import ActualRole, ActualState, Marker, RoleKind
from provisioner.core.values.plan import ChangeKind

HEAD = 'description = "d"\nowner = "o"\n'


def catalog(text: str, file: str = "roles.toml") -> tuple[PrivilegeCatalog, list[str]]:
    cat, problems = build_catalog([(file, text)], EXTRA_KEYS)
    model, more = build_privilege_catalog(cat)
    return model, problems + more


def test_every_problem_is_reported_at_once_with_file_and_role() -> None:
    _, problems = catalog(
        f"""
[role.a]
{HEAD}extras = "delete"
inherits = ["nobody"]
[[role.a.grants]]
on = "tables"
schema = "s"
privileges = ["EXECUTE"]
colour = "red"
[[role.a.grants]]
on = "columns"
schema = "s"
objects = ["*"]
privileges = ["SELECT"]
[[role.a.grants]]
on = "views"
privileges = ["SELECT"]
"""
    )
    text = "\n".join(problems)
    assert "roles.toml:2: [role.a]: extras 'delete' is not one of 'report', 'revoke'" in text
    assert "inherits unknown catalog role 'nobody'" in text
    assert "roles.toml:2: [role.a] grants[0]: privilege 'EXECUTE' is not valid on tables" in text
    assert "[role.a] grants[0]: unknown key(s) ['colour']" in text
    assert "grants[1]: on = \"columns\" needs 'objects'" in text
    assert "grants[1]: on = \"columns\" needs 'columns'" in text
    assert "grants[2]: 'on' must be one of" in text


def test_inheritance_cycles_are_reported_with_the_full_path() -> None:
    _, problems = catalog(
        "".join(f'[role.{n}]\n{HEAD}inherits = ["{p}"]\n' for n, p in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "d")])
    )
    assert "roles.toml:1: inheritance cycle: a -> b -> c -> a" in problems
    assert "roles.toml:13: inheritance cycle: d -> d" in problems
    assert len([p for p in problems if "cycle" in p]) == 2


TRADING = f"""
[role.reader]
{HEAD}[[role.reader.grants]]
on = "tables"
schema = "trading"
privileges = ["SELECT"]
[role.executor]
{HEAD}inherits = ["reader"]
[[role.executor.grants]]
on = "tables"
schema = "trading"
objects = ["orders"]
privileges = ["insert"]
"""


def test_effective_privileges_include_inherited_roles_with_their_path() -> None:
    model, problems = catalog(TRADING)
    assert problems == []
    eff = effective_privileges(model, ["executor"])  # symbolic: no inventory
    insert = covers(eff, "INSERT", "table", "trading", "orders")
    select = covers(eff, "SELECT", "table", "trading", "orders")
    assert [e.path for e in insert] == [("executor",)]
    assert [e.path for e in select] == [("executor", "reader")]
    assert select[0].because().startswith("`executor`, which includes `reader`, which grants SELECT on all tables")
    assert covers(eff, "INSERT", "table", "trading", "approvals") == []


def _state(grants: set[Grant]) -> ActualState:
    inv = Inventory("db", "owner", {"trading": "owner"}, {"trading": ("approvals", "orders")})
    roles = {
        n: ActualRole(n, False, marker=Marker(RoleKind.GROUP), member_of=frozenset({"reader"} if n == "executor" else ()))
        for n in ("reader", "executor")
    }
    roles["owner"] = ActualRole("owner", False)
    return ActualState("t", roles, "svc", privileges=PrivilegeSnapshot("db", {"db": inv}, frozenset(grants)))


def test_diff_grants_missing_expands_wildcards_and_reports_extras() -> None:
    model, _ = catalog(TRADING)
    orders = Obj("db", "table", "trading", "orders")
    extra = Grant("executor", Obj("db", "table", "trading", "approvals"), "DELETE")
    changes, notices = plan_privileges(model, _state({Grant("executor", orders, "INSERT"), extra}), PrivilegePolicy())
    lines = sorted(c.describe() for c in changes)
    assert lines == [
        "grant SELECT on future tables of owner in schema trading in database db to reader",
        "grant SELECT on table trading.approvals in database db to reader",
        "grant SELECT on table trading.orders in database db to reader",
    ]
    assert all(c.kind is ChangeKind.GRANT_PRIVILEGE for c in changes)
    assert [n.code for n in notices] == ["privilege_extra"]
    assert "executor holds DELETE on table trading.approvals" in notices[0].message


def test_diff_revokes_extras_when_the_role_says_so_and_notes_missing_objects() -> None:
    model, _ = catalog(TRADING.replace('inherits = ["reader"]', 'inherits = ["reader"]\nextras = "revoke"').replace('["orders"]', '["orders", "ghost"]'))
    extra = Grant("executor", Obj("db", "table", "trading", "approvals"), "DELETE")
    changes, notices = plan_privileges(model, _state({extra}), PrivilegePolicy(default_owners=("app",)))
    revokes = [c for c in changes if c.kind is ChangeKind.REVOKE_PRIVILEGE]
    assert [c.describe() for c in revokes] == ["revoke DELETE on table trading.approvals in database db from executor"]
    assert "extras = revoke" in revokes[0].reasons[0].text
    assert any("future tables of app" in c.describe() for c in changes)
    assert any(n.code == "missing_object" and "table trading.ghost" in n.message for n in notices)
