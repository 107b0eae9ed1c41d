"""The audit tables (chain and checkpoints) and their insert-only guard on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, insert
from sqlalchemy.engine import Connection, Engine

from provisioner.errors import PermanentError

audit_metadata = MetaData()

_SEQ = BigInteger().with_variant(Integer, "sqlite")

audit = Table(
    "provisioner_audit",
    audit_metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("run_id", String(36), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("target", String(200), index=True),
    Column("role", String(200), index=True),
    Column("content", Text, nullable=False),
    Column("prev_hash", String(80), nullable=False),
    # not UNIQUE: an index on a SHA-256 is written in random order, and at 300,000 records per
    # run (a 50,000-user first sync) it cost more than every other index together (bench/
    # audit_append.py); the chain itself (each hash covers its seq and predecessor) and the
    # signed checkpoints are what make a duplicate or an edit evident, not the index.
    # Stores created before keep theirs.
    Column("hash", String(80), nullable=False),
)

checkpoints = Table(
    "provisioner_audit_checkpoints",
    audit_metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("head_seq", _SEQ, nullable=False),
    Column("payload", Text, nullable=False),
    Column("signature", String(200), nullable=False),
    Column("public_key", String(200), nullable=False),
)

_PG_GUARD = """
CREATE OR REPLACE FUNCTION provisioner_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
    MESSAGE = 'provisioner audit tables are insert-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
END $$
"""


def install_schema(engine: Engine) -> None:
    audit_metadata.create_all(engine)
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("provisioner_audit", "provisioner_audit_checkpoints"):
            have = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = %(t)s::regclass "
                "AND tgname IN ('provisioner_audit_no_change', 'provisioner_audit_no_truncate')",
                {"t": table},
            ).scalar_one()
            if have == 2:
                continue
            conn.exec_driver_sql(_PG_GUARD)
            for name, when in (
                ("provisioner_audit_no_change", "BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW"),
                ("provisioner_audit_no_truncate", "BEFORE TRUNCATE ON {t} FOR EACH STATEMENT"),
            ):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {name} {when.format(t=table)} EXECUTE FUNCTION provisioner_audit_refuse()"
                )
                conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")


def insert_rows(conn: Connection, rows: list[tuple[Any, ...]], chunk: int) -> None:
    """Insert audit rows (each a tuple of the table's columns in order) by the driver's
    executemany of the statement compiled once, without SQLAlchemy's per-row parameter handling:
    each value is bound as the column's type binds it on this dialect (on SQLite, ``at`` becomes
    SQLAlchemy's DATETIME text)."""
    dialect = conn.dialect
    compiled = insert(audit).compile(dialect=dialect)
    names = [c.name for c in audit.c]
    binds = [
        (i, bind) for i, c in enumerate(audit.c) if (bind := c.type.dialect_impl(dialect).bind_processor(dialect))
    ]
    if binds:
        rows = _bound(rows, binds)
    if dialect.positional:
        if compiled.positiontup != names:  # a tuple's values go to the columns in table order
            raise PermanentError(f"audit insert binds {compiled.positiontup}, not the table's columns {names}")
        params: list[Any] = rows
    else:
        params = [dict(zip(names, row, strict=True)) for row in rows]
    for i in range(0, len(params), chunk):
        conn.exec_driver_sql(compiled.string, params[i : i + chunk])


def _bound(rows: list[tuple[Any, ...]], binds: Sequence[tuple[int, Callable[[Any], Any]]]) -> list[tuple[Any, ...]]:
    """``rows`` with each value bound; a value that is the previous row's own object (a batch's
    records share their time) is bound once."""
    out = []
    last: dict[int, tuple[Any, Any]] = {}
    for row in rows:
        values = list(row)
        for i, bind in binds:
            value = values[i]
            hit = last.get(i)
            if hit is None or hit[0] is not value:
                hit = last[i] = (value, bind(value))
            values[i] = hit[1]
        out.append(tuple(values))
    return out
