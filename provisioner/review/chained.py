"""Review decisions in the audit chain: each imported decision is chained in the ``review``
record of its import; the review tables are a convenience copy, checked against the chain by
``audit verify`` and before evidence is written (docs/reviews.md, docs/audit.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import inspect, select

from provisioner.core.governance.audit import EventKind
from provisioner.core.governance.review import Decision
from provisioner.errors import PermanentError
from provisioner.review.store import items
from provisioner.store.audit import AuditFilter
from provisioner.store.state import StateStore

DECIDED = ("decision", "comment", "decided_by")


class ReviewTampered(PermanentError):
    """The review tables say something the audit chain does not."""


def decisions_json(decisions: Iterable[Decision]) -> list[dict[str, Any]]:
    """What the ``review`` record of an import chains, per decision."""
    return [
        {"item_id": d.item_id, "decision": d.decision, "comment": d.comment, "decided_by": d.reviewer, "line": d.line}
        for d in decisions
    ]


def chained_decisions(store: StateStore, campaign: str | None = None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(campaign, item id) -> every decision the chain holds for it, oldest first."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in store.audit.iter_rows(AuditFilter(kinds=(EventKind.REVIEW.value,))):
        after = row.content.get("after")
        if not isinstance(after, dict) or not isinstance(after.get("items"), list):
            continue
        if campaign is not None and after.get("campaign") != campaign:
            continue
        for d in after["items"]:
            if isinstance(d, dict):
                out.setdefault((str(after.get("campaign")), str(d.get("item_id"))), []).append({**d, "seq": row.seq})
    return out


def decision_problems(store: StateStore, campaign: str | None = None) -> list[str]:
    """Every decided review item whose decision is not the chain's (edited or inserted rows)."""
    chained = chained_decisions(store, campaign)
    if not inspect(store.engine).has_table(items.name):
        campaigns = sorted({c for c, _ in chained})
        return [f"review {c}: decisions in the audit chain but no review tables (dropped)" for c in campaigns]
    q = select(items.c.campaign, items.c.item_id, items.c.outcome, *(items.c[c] for c in DECIDED)).where(
        items.c.decision.is_not(None), items.c.decision != ""
    )
    if campaign is not None:
        q = q.where(items.c.campaign == campaign)
    problems = []
    with store.engine.connect() as conn:
        for r in conn.execute(q.order_by(items.c.campaign, items.c.item_id)).mappings():
            history = chained.get((r["campaign"], r["item_id"]))
            if not history:
                problems.append(
                    f"review {r['campaign']} item {r['item_id']}: decision {r['decision']!r} by {r['decided_by']!r} "
                    "is in no imported worksheet of the audit chain (row forged)"
                )
                continue
            # a revoked item keeps the decision that revoked it (later imports do not touch it)
            candidates = history if r["outcome"] == "revoked" else history[-1:]
            if any(all((r[c] or "") == (d.get(c) or "") for c in DECIDED) for d in candidates):
                continue
            mine = history[-1]
            diff = [c for c in DECIDED if (r[c] or "") != (mine.get(c) or "")]
            if diff:
                problems.append(
                    f"review {r['campaign']} item {r['item_id']}: {', '.join(diff)} differ from the chained "
                    f"import (audit seq {mine['seq']}): {r['decision']!r} in the table, {mine.get('decision')!r} "
                    "in the chain (row edited)"
                )
    return problems


def require_chained(store: StateStore, campaign: str) -> None:
    problems = decision_problems(store, campaign)
    if problems:
        raise ReviewTampered(
            f"review {campaign}: the decisions in the review tables disagree with the audit chain; "
            "no evidence written:\n" + "\n".join(problems)
        )
