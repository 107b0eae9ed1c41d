"""The durable alert outbox in the state store (SQLAlchemy).

One row per (alert, channel).  A row is marked sent only after its channel
accepted it; a failed delivery stays pending with its attempt count, the next
attempt time (backoff) and the last error, and is retried by every later run
until it goes through.  Dedup and the rate cap are read from the rows
themselves, ignoring timestamps in the future (a row stamped 2099 silences
nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

outbox_metadata = MetaData()

_ID = BigInteger().with_variant(Integer, "sqlite")

outbox = Table(
    "provisioner_alert_outbox",
    outbox_metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("channel", String(200), nullable=False, index=True),
    Column("key", String(500), nullable=False, index=True),
    Column("severity", String(16), nullable=False),
    Column("alert", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False, index=True),  # pending | sent | held (rate cap: in a digest)
    Column("attempts", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("last_error", Text),
)

CLOCK_SKEW = timedelta(minutes=5)
"""Rows stamped further in the future than this are ignored by dedup and the rate cap."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    channel: str
    key: str
    severity: str
    alert: dict[str, Any]
    attempts: int


class Outbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def recently_queued(self, key: str, channel: str, since: datetime, now: datetime) -> bool:
        """An alert with this key was queued (pending, sent or held) for ``channel`` since ``since``."""
        q = select(func.count()).select_from(outbox).where(
            outbox.c.key == key,
            outbox.c.channel == channel,
            outbox.c.created_at >= since,
            outbox.c.created_at <= now + CLOCK_SKEW,
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one()) > 0

    def enqueue(self, channel: str, key: str, severity: str, alert: dict[str, Any], now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(outbox).values(
                    channel=channel, key=key, severity=severity, alert=json.dumps(alert, sort_keys=True),
                    created_at=now, state="pending", attempts=0, failures=0, next_attempt_at=now,
                )
            )

    def due(self, channel: str, now: datetime) -> list[OutboxRow]:
        """``channel``'s pending rows in order, oldest first, once any of them is due: a later
        alert never overtakes an older one sitting out its backoff (the channel is tried anyway)."""
        q = select(outbox).where(outbox.c.channel == channel, outbox.c.state == "pending").order_by(outbox.c.id)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        if not any((_utc(r["next_attempt_at"]) or now) <= now for r in rows):
            return []
        return [
            OutboxRow(int(r["id"]), r["channel"], r["key"], r["severity"], json.loads(r["alert"]), int(r["attempts"]))
            for r in rows
        ]

    def sent_since(self, channel: str, since: datetime, now: datetime) -> int:
        q = select(func.count()).select_from(outbox).where(
            outbox.c.channel == channel,
            outbox.c.state == "sent",
            outbox.c.sent_at >= since,
            outbox.c.sent_at <= now + CLOCK_SKEW,
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def mark(self, row_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))

    def sent(self, row_id: int, now: datetime, attempts: int) -> None:
        self.mark(row_id, state="sent", sent_at=now, attempts=attempts, last_error=None)

    def failed(self, row_id: int, attempts: int, failures: int, retry_at: datetime, error: str) -> None:
        """``failures`` failed attempts more (counted in ``failures_total``)."""
        self.mark(
            row_id, attempts=attempts, failures=outbox.c.failures + failures, next_attempt_at=retry_at,
            last_error=error[:2000],
        )

    def held(self, row_id: int) -> None:
        self.mark(row_id, state="held")

    def depth(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(outbox).where(outbox.c.state == "pending")).scalar_one()
            )

    def failures_total(self) -> int:
        """Failed delivery attempts ever (durable: survives restarts)."""
        q = select(func.coalesce(func.sum(outbox.c.failures), 0))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def pending_channels(self) -> Sequence[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox.c.channel).where(outbox.c.state == "pending").distinct())
            return [r[0] for r in rows]

