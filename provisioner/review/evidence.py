"""The evidence report for auditors: coverage, decisions, revocations done
(with audit sequence numbers), items still open, bound to the audit trail by
its latest signed checkpoint (signed now when a signing key is configured)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.config import Config
from provisioner.core.governance.review import ItemState, coverage
from provisioner.review.chained import require_chained
from provisioner.review.store import ReviewStore
from provisioner.review.worksheets import cell, e, page, person_order, slug, table, write_csv
from provisioner.store.state import StateStore

EVIDENCE_COLUMNS = (
    "item_id", "reviewer", "target", "identity", "role", "access", "sensitivity", "provenance", "sod",
    "granted_at", "decision", "comment", "decided_by", "decided_at", "outcome", "outcome_detail", "audit_seq",
)


def status(store: StateStore, campaign: str) -> dict[str, Any]:
    rs = ReviewStore(store)
    info = rs.campaign(campaign)
    require_chained(store, campaign)  # a decision the chain does not hold never reaches the evidence
    states = rs.states(campaign)
    cov = coverage(states)
    total = sum(r["items"] for r in cov)
    decided = sum(r["decided"] for r in cov)
    return {
        "campaign": campaign,
        "created_at": info["created_at"].isoformat() if info["created_at"] else "",
        "created_by": info["created_by"],
        "reviewer_mode": info["reviewer_mode"],
        "items": total,
        "decided": decided,
        "open": total - decided,
        "coverage_pct": round(100.0 * decided / total, 1) if total else 100.0,
        "revoked": sum(s.outcome == "revoked" for s in states),
        "flagged": sum(s.outcome == "needs rule change or exception" for s in states),
        "reviewers": cov,
    }


def audit_binding(cfg: Config, store: StateStore) -> dict[str, Any]:
    """The audit head now and the latest signed checkpoint (a new one when a signing key is configured)."""
    seq, head = store.audit.head()
    out: dict[str, Any] = {"head_seq": seq, "head_hash": head, "checkpoint": None}
    if cfg.audit.signing_key is not None:
        from provisioner.store.signing import load_signing_key, sign_head

        out["checkpoint"] = sign_head(store.audit, load_signing_key(cfg.audit.signing_key)).to_json()
    else:
        latest = store.audit.latest_checkpoint()
        out["checkpoint"] = latest.to_json() if latest is not None else None
    return out


def _row(st: ItemState) -> dict[str, str]:
    i = st.item
    return {
        "item_id": i.item_id, "reviewer": i.reviewer, "target": i.target, "identity": i.identity, "role": i.role,
        "access": i.access, "sensitivity": i.sensitivity,
        "provenance": i.provenance + (": " + ", ".join(i.rules) if i.rules else ""),
        "sod": ", ".join(i.sod), "granted_at": i.granted_at, "decision": st.decision or "open",
        "comment": st.comment, "decided_by": st.decided_by, "decided_at": st.decided_at,
        "outcome": st.outcome, "outcome_detail": st.outcome_detail,
        "audit_seq": "" if st.audit_seq is None else str(st.audit_seq),
    }


def write_evidence(cfg: Config, store: StateStore, campaign: str, out: Path) -> list[Path]:
    """evidence HTML + items CSV + coverage CSV; returns the files written."""
    rs = ReviewStore(store)
    info = rs.campaign(campaign)
    require_chained(store, campaign)  # a decision the chain does not hold never reaches the evidence
    states = sorted(rs.states(campaign), key=lambda s: (s.item.reviewer, *person_order(s)))
    st = status(store, campaign)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"evidence-{slug(campaign)}"
    items_csv, cov_csv = base.with_name(base.name + "-items.csv"), base.with_name(base.name + "-coverage.csv")
    write_csv_rows(items_csv, EVIDENCE_COLUMNS, [_row(s) for s in states])
    write_csv_rows(cov_csv, ("reviewer", "items", "decided", "keep", "revoke", "open"), st["reviewers"])
    digests = {p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in (items_csv, cov_csv)}
    binding = audit_binding(cfg, store)
    rows = [_row(s) for s in states]
    cp = binding["checkpoint"]
    cp_html = (
        f"<pre>{e(json.dumps(cp, indent=2, sort_keys=True))}</pre>" if cp
        else "<p>No signed checkpoint yet (configure <code>[audit] signing_key</code>); the head below binds "
             "this report to the hash chain.</p>"
    )
    meta = info.get("meta") or {}
    body = "".join([
        f"<h1>Access review {e(campaign)}: evidence</h1>",
        f"<p class=\"meta\">Generated {e(datetime.now(UTC).isoformat())}. Campaign started "
        f"{e(st['created_at'])} by {e(st['created_by'])}; reviewers: {e(st['reviewer_mode'])}; snapshot of "
        f"{e(', '.join(meta.get('targets', [])))} at {e(meta.get('snapshot_at', ''))}.</p>",
        "<h2>Coverage</h2>",
        f"<p>{st['decided']} of {st['items']} item(s) decided ({st['coverage_pct']}%), {st['open']} open; "
        f"{st['revoked']} revoked, {st['flagged']} flagged (needs rule change or exception).</p>",
        table(["reviewer", "items", "decided", "keep", "revoke", "open"],
              [[r["reviewer"], r["items"], r["decided"], r["keep"], r["revoke"], r["open"]] for r in st["reviewers"]]),
        "<h2>Revocations done</h2>",
        _section(rows, lambda r: r["outcome"] == "revoked",
                 ["identity", "target", "access", "decided_by", "comment", "audit_seq"]),
        "<h2>Revoke decisions not applied (needs rule change or exception)</h2>",
        _section(rows, lambda r: r["outcome"] == "needs rule change or exception",
                 ["identity", "target", "access", "decided_by", "comment", "outcome_detail"]),
        "<h2>Items still open</h2>",
        _section(rows, lambda r: r["decision"] == "open", ["identity", "target", "access", "reviewer", "sensitivity"]),
        "<h2>All decisions</h2>",
        table(list(EVIDENCE_COLUMNS), [[r[c] for c in EVIDENCE_COLUMNS] for r in rows]),
        "<h2>Imported worksheets</h2>",
        table(["file", "sha256", "reviewer", "imported", "decisions"],
              [[i["file"], i["sha256"], i["reviewer"], i["imported_at"], i["decisions"]]
               for i in rs.imports(campaign)]),
        "<h2>Binding to the audit trail</h2>",
        f"<p>Audit head at generation: seq {binding['head_seq']}, hash <code>{e(binding['head_hash'])}</code>. "
        f"Campaign snapshot taken at audit seq {e(meta.get('audit_head', {}).get('seq', ''))}.</p>",
        cp_html,
        "<p>CSV files of this report: "
        + ", ".join(f"{e(n)} <code>{e(d)}</code>" for n, d in sorted(digests.items())) + "</p>",
    ])
    html_path = base.with_suffix(".html")
    html_path.write_text(page(f"Access review {campaign} evidence", body), encoding="utf-8")
    return [html_path, items_csv, cov_csv]


def _section(rows: list[dict[str, str]], keep: Any, cols: list[str]) -> str:
    chosen = [r for r in rows if keep(r)]
    return table(cols, [[r[c] for c in cols] for r in chosen]) if chosen else "<p>None.</p>"


def write_csv_rows(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: cell(str(r.get(c, ""))) for c in columns})


__all__ = ["audit_binding", "status", "write_csv", "write_evidence"]
