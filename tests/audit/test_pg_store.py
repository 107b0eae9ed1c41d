"""The audit store on the real PostgreSQL, in a freshly created database: the
documented least-privilege setup, the always-enabled insert-only trigger."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.store.signer import Signer
from provisioner.store.signing import sign_head, verify_chain
from provisioner.store.state import StateStore
from tests.support import pg

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def doc_sql(block: str, names: dict[str, str]) -> list[str]:
    text = DOC.read_text()
    body = text.split(f"<!-- least-privilege-sql:{block} -->")[1].split("<!-- /least-privilege-sql")[0]
    code = body.split("```sql")[1].split("```")[0]
    code = re.sub(r"--[^\n]*", "", code)
    for name, real in sorted(names.items(), key=lambda kv: -len(kv[0])):
        code = re.sub(rf"\b{name}\b", f'"{real}"', code)
    return [s.strip() for s in code.split(";") if s.strip()]


def _dsn_for(user: str, db: str) -> psycopg.conninfo.ConnectionInfo | str:
    params = psycopg.conninfo.conninfo_to_dict(pg.admin_dsn())
    params.update(user=user, dbname=db)
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)


def _url(user: str, db: str) -> str:
    p = psycopg.conninfo.conninfo_to_dict(pg.admin_dsn())
    return f"postgresql://{user}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{db}"


@pytest.fixture
def audit_db(role_prefix: str) -> Iterator[dict[str, str]]:
    names = {
        "provisioner_owner": f"{role_prefix}audit_owner",
        "provisioner_writer": f"{role_prefix}audit_writer",
        "provisioner": f"{role_prefix}auditdb_{uuid.uuid4().hex[:6]}",
    }
    with pg.admin_connect() as conn:
        for statement in doc_sql("roles", names):
            conn.execute(statement)
    try:
        yield names
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names["provisioner"])))


def _event(i: int) -> AuditEvent:
    return AuditEvent(f"run-{i}", datetime.now(UTC), "pytest", "manual", EventKind.RUN_FINISHED, reason=f"r{i}")


def _refused(dsn: Any, statement: str, setup: str | None = None) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if setup:
            conn.execute(setup)
        with pytest.raises(psycopg.Error) as info:
            conn.execute(statement)
    return str(info.value)


def test_documented_least_privilege_setup_and_always_trigger(audit_db: dict[str, str]) -> None:
    owner, writer, db = audit_db["provisioner_owner"], audit_db["provisioner_writer"], audit_db["provisioner"]
    StateStore(_url(owner, db)).close()  # step 2: the owner creates the schema
    with psycopg.connect(_dsn_for(owner, db), autocommit=True) as conn:
        for statement in doc_sql("grants", audit_db):
            conn.execute(statement)

    key = Ed25519PrivateKey.generate()
    store = StateStore(_url(writer, db), signer=Signer(key))  # the service account, signing every append
    try:
        rid = store.start_run("manual", "pytest", "apply")
        store.append([_event(i) for i in range(5)])
        store.finish_run(rid, "ok", {})
        store.put("k", {"v": 1})
        store.put("k", {"v": 2})
        assert sign_head(store.audit, key).checkpoint.n == 1  # the head is signed already: no new one
        store.append([_event(9)])
        report = verify_chain(store.audit, [], key.public_key(), require_signed=True)
        assert report.ok and report.count == 6 and report.stored_checkpoints == 2
    finally:
        store.close()

    as_writer = _dsn_for(writer, db)
    for statement in (
        "UPDATE provisioner_audit SET kind = 'x'",
        "DELETE FROM provisioner_audit",
        "TRUNCATE provisioner_audit",
        "UPDATE provisioner_audit_checkpoints SET signature = 'x'",
        "DELETE FROM provisioner_audit_checkpoints",
    ):
        assert "permission denied" in _refused(as_writer, statement)

    as_owner = _dsn_for(owner, db)
    as_super = _dsn_for(psycopg.conninfo.conninfo_to_dict(pg.admin_dsn()).get("user", "postgres"), db)  # type: ignore[arg-type]
    for dsn, setup in ((as_owner, None), (as_super, "SET session_replication_role = replica")):
        for statement in (
            "UPDATE provisioner_audit SET kind = 'x' WHERE seq = 1",
            "DELETE FROM provisioner_audit WHERE seq = 6",
            "TRUNCATE provisioner_audit",
            "TRUNCATE provisioner_audit_checkpoints",
            "DELETE FROM provisioner_audit_checkpoints",
        ):
            assert "insert-only" in _refused(dsn, statement, setup)
    with psycopg.connect(as_super) as conn:
        enabled = conn.execute(
            "SELECT DISTINCT tgenabled FROM pg_trigger WHERE tgname LIKE 'provisioner_audit_no_%'"
        ).fetchall()
        count = conn.execute("SELECT count(*) FROM provisioner_audit").fetchone()
    assert enabled == [("A",)]  # ENABLE ALWAYS
    assert count == (6,)
