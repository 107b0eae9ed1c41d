"""Campaigns, their frozen items and decisions in the state store (SQLAlchemy).

Own tables beside the state store's: ``provisioner_review_campaigns``,
``provisioner_review_items`` and ``provisioner_review_imports``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from provisioner.core.governance.review import Decision, ItemState, ReviewItem, derive_key
from provisioner.core.identity.exclusions import Exclusion
from provisioner.errors import PermanentError, TemporaryError
from provisioner.store.state import StateStore

review_metadata = MetaData()

campaigns = Table(
    "provisioner_review_campaigns",
    review_metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("reviewer_mode", String(16), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("meta", JSON, nullable=False),
)

items = Table(
    "provisioner_review_items",
    review_metadata,
    Column("campaign", String(64), primary_key=True),
    Column("item_id", String(40), primary_key=True),
    Column("reviewer", String(200), nullable=False, index=True),
    Column("data", JSON, nullable=False),
    Column("decision", String(16), nullable=False, default=""),
    Column("comment", Text, nullable=False, default=""),
    Column("decided_by", String(200), nullable=False, default=""),
    Column("decided_at", String(40), nullable=False, default=""),
    Column("outcome", String(64), nullable=False, default=""),
    Column("outcome_detail", Text, nullable=False, default=""),
    Column("audit_seq", Integer),
)

imports = Table(
    "provisioner_review_imports",
    review_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(64), nullable=False, index=True),
    Column("file", Text, nullable=False),
    Column("sha256", String(80), nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("decisions", Integer, nullable=False),
)


exclusions = Table(
    "provisioner_review_exclusions",
    review_metadata,
    Column("campaign", String(64), primary_key=True),
    Column("item_id", String(40), primary_key=True),
    Column("stable_id", String(400), nullable=False, index=True),
    Column("access", String(400), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
)

lifecycle = Table(
    "provisioner_review_lifecycle",
    review_metadata,
    Column("campaign", String(64), primary_key=True),
    Column("due_at", DateTime(timezone=True)),
    Column("signed_off_at", DateTime(timezone=True)),
    Column("signed_off_by", String(200), nullable=False, default=""),
    Column("signoff_comment", Text, nullable=False, default=""),
)

delegations = Table(
    "provisioner_review_delegations",
    review_metadata,
    Column("campaign", String(64), primary_key=True),
    Column("reviewer", String(200), primary_key=True),
    Column("delegate", String(200), nullable=False),
    Column("by", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("comment", Text, nullable=False, default=""),
)


class ReviewStoreError(TemporaryError):
    """The review tables cannot be read or written."""


class CampaignError(PermanentError):
    """Unknown campaign, or one that already exists."""


class ReviewStore:
    def __init__(self, store: StateStore) -> None:
        self.engine = store.engine
        try:
            review_metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise ReviewStoreError(f"cannot create the review tables: {exc}") from exc

    def exists(self, campaign: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(campaigns.c.id).where(campaigns.c.id == campaign)).first() is not None

    def create(self, campaign: str, actor: str, mode: str, meta: dict[str, Any]) -> bytes:
        """Create the campaign and its secret; return the item-signing key."""
        secret = secrets.token_hex(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(campaigns).values(
                        id=campaign, created_at=datetime.now(UTC), created_by=actor,
                        reviewer_mode=mode, secret=secret, meta=meta,
                    )
                )
        except IntegrityError as exc:
            raise CampaignError(f"campaign {campaign!r} already exists") from exc
        return derive_key(bytes.fromhex(secret), campaign)

    def add_items(self, campaign: str, frozen: Sequence[ReviewItem], meta: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            if frozen:
                conn.execute(
                    insert(items),
                    [
                        {"campaign": campaign, "item_id": i.item_id, "reviewer": i.reviewer, "data": i.to_json(),
                         "decision": "", "comment": "", "decided_by": "", "decided_at": "", "outcome": "",
                         "outcome_detail": ""}
                        for i in frozen
                    ],
                )
            conn.execute(update(campaigns).where(campaigns.c.id == campaign).values(meta=meta))

    def campaign(self, campaign: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(campaigns).where(campaigns.c.id == campaign)).mappings().first()
        if row is None:
            raise CampaignError(f"no access-review campaign {campaign!r} (start it with: provisioner review start)")
        return dict(row)

    def key(self, campaign: str) -> bytes:
        return derive_key(bytes.fromhex(self.campaign(campaign)["secret"]), campaign)

    def list_campaigns(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(campaigns.c.id).order_by(campaigns.c.created_at))]

    def states(self, campaign: str) -> list[ItemState]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(items).where(items.c.campaign == campaign).order_by(items.c.reviewer, items.c.item_id)
            ).mappings()
            return [
                ItemState(
                    ReviewItem.from_json(r["data"]), r["decision"], r["comment"], r["decided_by"],
                    r["decided_at"], r["outcome"], r["outcome_detail"], r["audit_seq"],
                )
                for r in rows
            ]

    def record_decisions(
        self, campaign: str, decisions: Iterable[Decision], file: str, digest: str, reviewer: str
    ) -> int:
        """Store every decision of one file in one transaction."""
        now = datetime.now(UTC)
        count = 0
        with self.engine.begin() as conn:
            for d in decisions:
                conn.execute(
                    update(items)
                    .where(items.c.campaign == campaign, items.c.item_id == d.item_id,
                           items.c.outcome != "revoked")
                    .values(decision=d.decision, comment=d.comment, decided_by=d.reviewer,
                            decided_at=now.isoformat())
                )
                count += 1
            conn.execute(
                insert(imports).values(campaign=campaign, file=file, sha256=digest, reviewer=reviewer,
                                       imported_at=now, decisions=count)
            )
        return count

    def record_outcomes(self, campaign: str, outcomes: Iterable[tuple[str, str, str, int | None]]) -> None:
        """(item id, outcome, detail, audit seq) for each item."""
        with self.engine.begin() as conn:
            for iid, outcome, detail, seq in outcomes:
                conn.execute(
                    update(items)
                    .where(items.c.campaign == campaign, items.c.item_id == iid)
                    .values(outcome=outcome, outcome_detail=detail, audit_seq=seq)
                )

    def imports(self, campaign: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(imports).where(imports.c.campaign == campaign).order_by(imports.c.id))
            return [dict(r) for r in rows.mappings()]

    # ------------------------------------------------------------------ lifecycle

    def lifecycle(self, campaign: str) -> dict[str, Any]:
        """due_at, signed_off_at, signed_off_by, signoff_comment (None / empty when not set)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lifecycle).where(lifecycle.c.campaign == campaign)).mappings().first()
        out: dict[str, Any] = {"due_at": None, "signed_off_at": None, "signed_off_by": "", "signoff_comment": ""}
        if row is not None:
            out.update({k: row[k] for k in out})
            for k in ("due_at", "signed_off_at"):
                if out[k] is not None and out[k].tzinfo is None:  # SQLite drops the zone
                    out[k] = out[k].replace(tzinfo=UTC)
        return out

    def set_due(self, campaign: str, due_at: datetime) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(lifecycle).where(lifecycle.c.campaign == campaign).values(due_at=due_at))
            if not done.rowcount:
                conn.execute(insert(lifecycle).values(campaign=campaign, due_at=due_at, signed_off_by="",
                                                      signoff_comment=""))

    def sign_off(self, campaign: str, by: str, comment: str, at: datetime) -> None:
        """Close the campaign; refused when it is already signed off."""
        with self.engine.begin() as conn:
            row = conn.execute(select(lifecycle).where(lifecycle.c.campaign == campaign)).mappings().first()
            if row is not None and row["signed_off_at"] is not None:
                raise CampaignError(f"campaign {campaign!r} was already signed off by {row['signed_off_by']}")
            if row is None:
                conn.execute(insert(lifecycle).values(campaign=campaign, signed_off_at=at, signed_off_by=by,
                                                      signoff_comment=comment))
            else:
                conn.execute(update(lifecycle).where(lifecycle.c.campaign == campaign)
                             .values(signed_off_at=at, signed_off_by=by, signoff_comment=comment))

    def unresolved(self, campaign: str) -> frozenset[str]:
        """Reviewer names of the campaign that are no person in the directory (found at start)."""
        meta = self.campaign(campaign).get("meta") or {}
        return frozenset(meta.get("unresolved_reviewers") or ())

    def frozen(self, campaign: str) -> bool:
        return self.lifecycle(campaign)["signed_off_at"] is not None

    # ------------------------------------------------------------------ delegations

    def delegations(self, campaign: str) -> dict[str, str]:
        """reviewer -> delegate."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(delegations).where(delegations.c.campaign == campaign))
            return {r.reviewer: r.delegate for r in rows}

    def delegate(self, campaign: str, reviewer: str, delegate: str, by: str, comment: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(delegations).where(delegations.c.campaign == campaign,
                                                   delegations.c.reviewer == reviewer))
            conn.execute(insert(delegations).values(campaign=campaign, reviewer=reviewer, delegate=delegate,
                                                    by=by, at=at, comment=comment))

    # ------------------------------------------------------------------ exclusions

    def add_exclusions(self, found: Sequence[Exclusion]) -> None:
        """Record (or replace) the exclusion of each item."""
        with self.engine.begin() as conn:
            for e in found:
                conn.execute(delete(exclusions).where(exclusions.c.campaign == e.campaign,
                                                      exclusions.c.item_id == e.item_id))
                conn.execute(insert(exclusions).values(campaign=e.campaign, item_id=e.item_id,
                                                       stable_id=e.stable_id, access=e.access, until=e.until,
                                                       data=e.to_json()))

    def drop_exclusions(self, campaign: str, item_ids: Iterable[str]) -> None:
        ids = list(item_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(exclusions).where(exclusions.c.campaign == campaign, exclusions.c.item_id.in_(ids)))

    def exclusions(self, now: datetime | None = None) -> list[Exclusion]:
        """Every recorded exclusion (those still in force at ``now`` when given)."""
        query = select(exclusions.c.data).order_by(exclusions.c.campaign, exclusions.c.item_id)
        try:
            with self.engine.connect() as conn:
                found = [Exclusion.from_json(r[0]) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise ReviewStoreError(f"cannot read the review exclusions: {exc}") from exc
        return [e for e in found if now is None or e.holds(now)]
