"""The target contract is one contract: one change-failure error, declared capabilities (issue 20)."""

from __future__ import annotations

import ast
from pathlib import Path

from provisioner.core.values.capabilities import MARIADB, MYSQL, POSTGRESQL
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.errors import ApplyFailed
from provisioner.targets import base, mysql_apply

PACKAGE = Path(__file__).resolve().parents[2] / "provisioner"


def test_one_change_failed_class() -> None:
    defined = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name == "ChangeFailed"
    ]
    assert defined == ["targets/base.py"]
    assert issubclass(base.ChangeFailed, ApplyFailed)


def test_mariadb_refusal_is_the_shared_error() -> None:
    change = Change(ChangeKind.GRANT_PRIVILEGE, "alice", ())
    try:
        mysql_apply.check(change)
    except base.ChangeFailed as exc:
        assert exc.change is change and exc.applied == 0
    else:
        raise AssertionError("a privilege change must be refused on MariaDB")


def test_capabilities_are_declared_values() -> None:
    assert ActualState("t", {}, "svc").capabilities is POSTGRESQL
    assert POSTGRESQL.transactional and POSTGRESQL.object_privileges and POSTGRESQL.expiring_accounts
    assert not (MARIADB.transactional or MARIADB.expiring_accounts)
    assert MARIADB.object_privileges and MARIADB.dialect == "mariadb"  # translated (core/privileges/dialect.py)
    assert not MYSQL.object_privileges and MYSQL.object_privileges_why_not
