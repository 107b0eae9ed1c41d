"""The audit table's indexes: none on the record hash (written in random order, it cost more than
every other index together at 300,000 records: bench/audit_append.py 16.2 -> 10.9 s), and a
duplicated or edited record is still caught by the chain, on SQLite and PostgreSQL stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import inspect, text

from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.support import pg


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    name = f"audit_ix_{uuid.uuid4().hex[:10]}"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(pg.admin_dsn())
    auth = f"{params.get('user', 'postgres')}" + (f":{params['password']}" if "password" in params else "")
    try:
        yield f"postgresql://{auth}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{name}"
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _event(n: int) -> AuditEvent:
    return AuditEvent("run-1", datetime(2026, 12, 7, 9, 0, n, tzinfo=UTC), "svc", "manual",
                      EventKind.CHANGE_APPLIED, "pg", f"p_user{n}", after={"member": True})


def test_no_index_on_the_record_hash(store_url: str) -> None:
    store = StateStore(store_url)
    try:
        store.append([_event(n) for n in range(3)])
        found = inspect(store.engine)
        indexed = {tuple(ix["column_names"]) for ix in found.get_indexes("provisioner_audit")}
        unique = {tuple(u["column_names"]) for u in found.get_unique_constraints("provisioner_audit")}
        assert ("hash",) not in indexed | unique
        assert {("role",), ("run_id",), ("at",), ("kind",), ("target",)} <= indexed
        assert verify_chain(store.audit, [], None).ok
    finally:
        store.close()


def test_a_copied_record_still_breaks_the_chain(tmp_path: Path) -> None:
    """Without the unique index a second row with an earlier record's hash can be inserted by
    hand; verification names it."""
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.append([_event(n) for n in range(3)])
        with store.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO provisioner_audit (seq, run_id, at, kind, actor, target, role, content, prev_hash, hash) "
                "SELECT 4, run_id, at, kind, actor, target, role, content, prev_hash, hash "
                "FROM provisioner_audit WHERE seq = 2"
            ))
        report = verify_chain(store.audit, [], None)
        assert not report.ok and report.problem is not None and report.problem.seq == 4
    finally:
        store.close()
