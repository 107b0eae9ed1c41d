"""The target contract is one contract: one change-failure error, declared capabilities (issue 20)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
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


def _defined(name: str) -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == name
    )


def test_one_required_parameter_helper() -> None:
    assert _defined("_required") == []
    assert _defined("required") == ["targets/base.py"]


def test_one_lock_namer() -> None:
    for old in ("advisory_lock_key", "leader_lock_key", "leader_lock_name"):
        assert _defined(old) == [], old
    assert _defined("lock_name") == ["targets/base.py"] and _defined("lock_key") == ["targets/base.py"]
    # the names and keys of earlier versions: replicas of two versions still agree on the locks
    assert base.lock_name("apply", "pg") == "provisioner:pg"
    assert base.lock_name("leader", "pg") == "provisioner-leader:pg"
    assert len(base.lock_name("leader", "x" * 100)) == 64
    digest = hashlib.sha256(b"provisioner-leader:pg").digest()
    assert base.lock_key("leader", "pg") == int.from_bytes(digest[:8], "big", signed=True)
    digest = hashlib.sha256(b"provisioner:pg").digest()
    assert base.lock_key("apply", "pg") == int.from_bytes(digest[:8], "big", signed=True)


def test_the_daemon_takes_leader_locks_through_the_targets() -> None:
    """provisioner/daemon/ha.py imports no database driver and no adapter module: the lock
    sessions belong to the target adapters (targets/locks.py)."""
    tree = ast.parse((PACKAGE / "daemon" / "ha.py").read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m.split(".")[0] in ("psycopg", "pymysql")}
    assert not imported & {"provisioner.targets.postgres", "provisioner.targets.mysql"}
    assert "provisioner.targets.locks" in imported


def test_actual_state_facts_are_typed() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(ActualState)}
    assert "extra" not in fields
    assert fields["sessions"] == "Mapping[str, int]"
    assert fields["default_roles"] == "Mapping[str, str] | None"
    assert fields["server_version"] == "str"


def test_every_target_declares_its_capabilities() -> None:
    from provisioner.targets.memory import MemoryTarget

    assert MemoryTarget().capabilities is POSTGRESQL
    assert MemoryTarget(capabilities=MARIADB).inspect().capabilities is MARIADB
    from provisioner.config import MysqlTargetConfig, PostgresTargetConfig
    from provisioner.targets.mysql import MysqlTarget
    from provisioner.targets.postgres import PostgresTarget

    pg = PostgresTarget(PostgresTargetConfig.model_validate({"type": "postgresql", "name": "p", "dsn": "host=x"}))
    assert pg.capabilities is POSTGRESQL  # nothing connects: a declaration
    maria = MysqlTarget(MysqlTargetConfig.model_validate({"type": "mysql", "name": "m"}))
    # MariaDB's (MySQL 8's once its inspect() saw the server's version); object privileges
    # only with manage_privileges
    assert maria.capabilities == dataclasses.replace(MARIADB, object_privileges=False,
                                                     object_privileges_why_not=maria.capabilities.object_privileges_why_not)
    assert maria.capabilities.object_privileges_why_not
