"""MariaDB privilege statements on hostile names, and database-name wildcards (issue 20).

Identifiers are backtick-quoted (embedded backticks doubled); in a database-level grant
``_`` and ``%`` are LIKE wildcards, which provisioner escapes; a DBA's unescaped pattern
grant is read as such and revoked as written."""

from __future__ import annotations

from typing import Any

from provisioner.core.values.grants import COLUMN, TABLE, Obj
from provisioner.core.values.plan import ChangeKind, make_change
from provisioner.targets.mysql import MysqlTarget
from tests.mysql.test_mysql_target import WHY, _group
from tests.support import mysql as M

ODD_DB = "odd`db'; DROP"
ODD_TABLE = "we`ird'; DROP TABLE x; --"


def _privilege(kind: ChangeKind, role: str, obj: Obj, privileges: str) -> Any:
    return make_change(kind, role, WHY, privileges=privileges, object=obj.describe(), **obj.to_params())


def test_hostile_names_are_quoted_and_wildcards_escaped(
    mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    db, other = p + ODD_DB, p + "oddXdb"  # `_` in the prefix would match any character unescaped
    for name in (db, other):
        M.q(mysql_admin, f"CREATE DATABASE {M.ident(name)}")
        M.q(mysql_admin, f"CREATE TABLE {M.ident(name)}.{M.ident(ODD_TABLE)} (id INT, {M.ident('c`ol')} INT)")
    escaped = db.replace("_", "\\_")
    M.q(mysql_admin, f"GRANT ALL PRIVILEGES ON {M.ident(escaped)}.* TO {M.account(mysql_admin, mysql_login.user)}"
        " WITH GRANT OPTION")
    target = MysqlTarget(mysql_login.target_config(p + "t", manage_privileges=True))
    role = p + "desk"
    try:
        changes = [
            _group(role),
            _privilege(ChangeKind.GRANT_PRIVILEGE, role, Obj("", TABLE, db, ODD_TABLE), "SELECT, INSERT"),
            _privilege(ChangeKind.GRANT_PRIVILEGE, role, Obj("", TABLE, db, "*"), "UPDATE"),
            _privilege(ChangeKind.GRANT_PRIVILEGE, role, Obj("", COLUMN, db, ODD_TABLE, "c`ol"), "REFERENCES"),
        ]
        result = target.apply(changes)
        assert result.failed == (), result.failed
        held = {(g.obj.kind, g.obj.schema, g.obj.name, g.obj.column, g.privilege)
                for g in target.inspect().privileges.of(role)}  # type: ignore[union-attr]
        assert held == {
            (TABLE, db, ODD_TABLE, "", "SELECT"),
            (TABLE, db, ODD_TABLE, "", "INSERT"),
            (TABLE, db, "*", "", "UPDATE"),  # read back as the literal name, not a pattern
            (COLUMN, db, ODD_TABLE, "c`ol", "REFERENCES"),
        }
        rows = M.q(mysql_admin, "SELECT Db FROM mysql.db WHERE User = %s", (role,))
        assert rows == [(escaped,)]  # covers this database only, not `oddXdb`
        # a DBA's unescaped grant is a pattern: read as such, never as the literal database
        M.q(mysql_admin, f"GRANT DELETE ON {M.ident(db)}.* TO {M.ident(role)}")
        state = target.inspect()
        assert state.privileges is not None
        pattern = {g for g in state.privileges.of(role) if g.privilege == "DELETE"}
        assert [(g.obj.schema, g.obj.name) for g in pattern] == [(db + " (pattern)", "*")]
        (grant,) = pattern
        revoke = _privilege(ChangeKind.REVOKE_PRIVILEGE, role, grant.obj, "DELETE")
        # revoking it needs the provisioner to hold privileges on that same (broader) pattern:
        # refused, isolated and named, never silently taken for the literal database
        (failed,) = target.apply([revoke]).failed
        assert failed.change == revoke and failed.error.startswith("(1044) Access denied"), failed
        M.q(mysql_admin, f"GRANT ALL PRIVILEGES ON {M.ident(db)}.* TO {M.account(mysql_admin, mysql_login.user)}"
            " WITH GRANT OPTION")
        assert target.apply([revoke]).failed == ()
        state = target.inspect()
        assert state.privileges is not None
        assert not {g for g in state.privileges.of(role) if g.privilege == "DELETE"}
    finally:
        target.close()
        for name in (db, other):
            M.q(mysql_admin, f"DROP DATABASE IF EXISTS {M.ident(name)}")
