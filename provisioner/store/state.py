"""The state store (SQLAlchemy): run history, the audit chain, key/value state.

SQLite by default, PostgreSQL in production.  The audit table is append-only
by contract: this module never updates or deletes audit rows.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from provisioner.core.governance.audit import AuditEvent, EventKind, Record
from provisioner.errors import TemporaryError
from provisioner.store.audit import Appended, AuditLog, AuditRow, CheckpointSink
from provisioner.store.audit_schema import audit, install_schema
from provisioner.store.outbox import Outbox, outbox_metadata
from provisioner.store.signer import Signer

__all__ = ["AuditRow", "StateStore", "StoreUnavailable", "audit"]

metadata = MetaData()

runs = Table(
    "provisioner_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("trigger", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("outcome", String(32)),
    Column("summary", JSON),
    Column("error", Text),
)

kv = Table(
    "provisioner_state",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _create_private(db: Path) -> None:
    """Create the SQLite file readable by its owner only (SQLite's journals inherit the mode)."""
    try:
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreUnavailable(f"state store {db}: cannot create: {exc.strerror}") from exc
    os.close(fd)


class StoreUnavailable(TemporaryError):
    """The state store cannot be reached or written."""


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _parse(value: Any) -> datetime | None:
    try:
        return _utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A ``provisioner_runs`` row as plain JSON values, the form the chain holds."""
    out: dict[str, Any] = {}
    for key in ("run_id", "started_at", "finished_at", "trigger", "actor", "mode", "outcome", "summary", "error"):
        value = row.get(key)
        if isinstance(value, datetime):
            value = (_utc(value) or value).isoformat()
        out[key] = value
    plain: dict[str, Any] = json.loads(json.dumps(out, sort_keys=True, default=str))
    return plain


class StateStore:
    def __init__(
        self,
        url: str | URL,
        base_dir: Path | None = None,
        signer: Signer | None = None,
        on_checkpoint: CheckpointSink | None = None,
    ) -> None:
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
            db = Path(parsed.database)
            if not db.is_absolute() and base_dir is not None:
                db = base_dir / db
            db.parent.mkdir(parents=True, exist_ok=True)
            _create_private(db)
            parsed = parsed.set(database=str(db))
        elif parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args: dict[str, int] = {}
        if parsed.drivername.startswith("postgresql"):
            # TCP keepalives: a vanished server is noticed in about a minute (docs/daemon.md)
            connect_args = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
        try:
            self.engine: Engine = create_engine(parsed, future=True, connect_args=connect_args)
            metadata.create_all(self.engine)
            outbox_metadata.create_all(self.engine)
            install_schema(self.engine)
        except SQLAlchemyError as exc:
            message = f"state store {parsed.render_as_string(hide_password=True)}: {exc}"
            if parsed.password:
                message = message.replace(str(parsed.password), "***")
            raise StoreUnavailable(message) from None

        self.audit = AuditLog(self.engine, signer, on_checkpoint)
        self.outbox = Outbox(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- runs
    def start_run(self, trigger: str, actor: str, mode: str, run_id: str | None = None) -> str:
        rid = run_id or str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    run_id=rid, started_at=datetime.now(UTC), trigger=trigger, actor=actor, mode=mode
                )
            )
        return rid

    def finish_run(
        self, run_id: str, outcome: str, summary: dict[str, Any], error: str | None = None
    ) -> dict[str, Any]:
        """Close the run's history row; return the row as JSON values (chained as ``run_recorded``)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(finished_at=datetime.now(UTC), outcome=outcome, summary=summary, error=error)
            )
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
        return run_json(dict(row)) if row is not None else {"run_id": run_id, "outcome": outcome}

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.started_at.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    def run_history_problems(self) -> list[str]:
        """The run history table against the ``run_recorded`` records of the (verified) chain."""
        from provisioner.store.audit import AuditFilter

        chained: dict[str, dict[str, Any]] = {}
        first: datetime | None = None
        for rec in self.audit.iter_rows(AuditFilter(kinds=(EventKind.RUN_RECORDED.value,))):
            after = rec.content.get("after")
            if isinstance(after, dict) and after.get("run_id"):
                chained[str(after["run_id"])] = after
                at = _parse(after.get("started_at"))
                first = at if first is None or (at is not None and at < first) else first
        problems: list[str] = []
        seen: set[str] = set()
        with self.engine.connect() as conn:
            for r in conn.execute(select(runs).order_by(runs.c.started_at)).mappings():
                row = run_json(dict(r))
                rid = str(row["run_id"])
                seen.add(rid)
                mine = chained.get(rid)
                if mine is None:
                    started = _parse(row.get("started_at"))
                    if first is not None and started is not None and started > first and row.get("finished_at"):
                        problems.append(f"run {rid}: in the run history but not in the audit chain (row inserted)")
                    continue
                diff = sorted(k for k in set(row) | set(mine) if row.get(k) != mine.get(k))
                if diff:
                    problems.append(
                        f"run {rid}: the run history row differs from the chained record in {', '.join(diff)} "
                        "(row edited)"
                    )
        for rid in sorted(set(chained) - seen):
            problems.append(f"run {rid}: in the audit chain but missing from the run history (row deleted)")
        return problems

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
            return dict(row) if row else None

    # ---------------------------------------------------------------- audit
    def append(self, events: Sequence[AuditEvent | Record]) -> list[Appended]:
        """Chain and insert ``events`` atomically after the current head (see store/audit.py)."""
        return self.audit.append(events)

    def iter_audit(self, run_id: str | None = None, batch: int = 5000) -> Iterator[AuditRow]:
        from provisioner.store.audit import AuditFilter

        return self.audit.iter_rows(AuditFilter(run_id=run_id) if run_id else None, batch)

    # ---------------------------------------------------------------- key/value
    def get(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(kv.c.value).where(kv.c.key == key)).first()
            return row[0] if row else default

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for key, value in items:
                done = conn.execute(update(kv).where(kv.c.key == key).values(value=value, updated_at=now))
                if done.rowcount == 0:
                    conn.execute(insert(kv).values(key=key, value=value, updated_at=now))
