"""Review exclusions in the shell: record them from revoke decisions, read them for a run.

The pure part is :mod:`provisioner.core.identity.exclusions`; a run's desired state
honours every exclusion in force (:func:`for_run`, called by the pipeline)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from provisioner.config import Config
from provisioner.core.governance.review import Decision, ItemState, ReviewItem
from provisioner.core.identity.exclusions import Exclusion, basis
from provisioner.review.store import ReviewStore
from provisioner.store.state import StateStore


def store_url(cfg: Config) -> str:
    url = cfg.state.url
    if cfg.state.password is not None and "@" in url and ":@" in url:
        url = url.replace(":@", ":" + cfg.state.password.resolve() + "@", 1)
    return url


def for_run(cfg: Config, store: StateStore | None, now: datetime) -> list[Exclusion]:
    """Every exclusion in force at ``now`` (a run without a store of its own, such as
    ``explain``, reads the state store for them)."""
    if store is not None:
        return ReviewStore(store).exclusions(now)
    own = StateStore(store_url(cfg), base_dir=cfg.base_dir)
    try:
        return ReviewStore(own).exclusions(now)
    finally:
        own.close()


def exclusion(item: ReviewItem, decision: Decision, now: datetime, days: int) -> Exclusion:
    return Exclusion(
        stable_id=item.stable_id,
        access=item.access,
        until=now + timedelta(days=days),
        basis=basis(item.rules, item.attributes),
        campaign=item.campaign,
        item_id=item.item_id,
        reviewer=decision.reviewer,
        comment=decision.comment,
        decided_at=now.isoformat(),
    )


def record(
    rs: ReviewStore, campaign: str, states: Iterable[ItemState], decisions: Sequence[Decision], now: datetime,
    days: int,
) -> list[Exclusion]:
    """After decisions are stored: an exclusion for each revoke of rule-based access, and
    none any more for an item whose decision became keep.  Returns the exclusions made."""
    by_id = {s.item.item_id: s.item for s in states}
    made = [
        exclusion(by_id[d.item_id], d, now, days)
        for d in decisions
        if d.decision == "revoke" and by_id[d.item_id].provenance == "rule" and by_id[d.item_id].stable_id
    ]
    rs.drop_exclusions(campaign, [d.item_id for d in decisions if d.decision != "revoke"])
    rs.add_exclusions(made)
    return made
