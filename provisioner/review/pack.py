"""The quarterly evidence pack: ``provisioner report evidence --quarter 2026-Q4 --out DIR``.

One directory: ``evidence.html`` (for people), ``evidence.json`` (everything, for
tools), CSV files (review items, revocations, leaver latency, SoD exceptions, drift),
``public-key.pem`` and ``manifest.json``: the SHA-256 of every file, the audit head
and a checkpoint signed now, all signed with the audit signing key (Ed25519).
:func:`verify_pack` needs only the directory and the public key (obtained
independently; the copy in the pack is for convenience and is never trusted).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from provisioner.config import Config
from provisioner.core.governance.audit import key_id
from provisioner.core.governance.evidence import latency_summary, leaver_latencies, manifest_message, quarter_bounds
from provisioner.errors import ConfigError, PermanentError
from provisioner.mappings import load_mappings
from provisioner.review.evidence import EVIDENCE_COLUMNS, _row, status
from provisioner.review.store import ReviewStore
from provisioner.review.worksheets import cell, e, page, table
from provisioner.store.signing import load_signing_key, public_pem, sign_head, verify_chain
from provisioner.store.state import StateStore

FORMAT = "provisioner-evidence-pack/1"


class PackError(PermanentError):
    """The evidence pack cannot be written, or does not verify."""


def _in(at: str, start: datetime, end: datetime) -> bool:
    try:
        t = datetime.fromisoformat(at)
    except ValueError:
        return False
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return start <= t < end


def _campaigns(rs: ReviewStore, quarter: str, start: datetime, end: datetime) -> list[str]:
    out = []
    for c in rs.list_campaigns():
        created = rs.campaign(c)["created_at"]
        created = created if created is None or created.tzinfo else created.replace(tzinfo=UTC)
        if c == quarter or (created is not None and start <= created < end):
            out.append(c)
    return out


def collect(cfg: Config, store: StateStore, quarter: str, now: datetime) -> dict[str, Any]:
    """Everything the pack states, as one JSON-able value."""
    start, end = quarter_bounds(quarter)
    rs = ReviewStore(store)
    campaigns = []
    for c in _campaigns(rs, quarter, start, end):
        life = rs.lifecycle(c)
        campaigns.append({
            **status(store, c),
            "due_at": life["due_at"].isoformat() if life["due_at"] else None,
            "signed_off_at": life["signed_off_at"].isoformat() if life["signed_off_at"] else None,
            "signed_off_by": life["signed_off_by"], "signoff_statement": life["signoff_comment"],
            "delegations": rs.delegations(c),
            "item_rows": [_row(s) for s in rs.states(c)],
        })
    records = [(r.seq, r.content) for r in store.audit.iter_rows()]
    revocations: list[dict[str, Any]] = []
    drift_revoked: list[dict[str, Any]] = []
    drift_found: dict[tuple[str, str, str], dict[str, Any]] = {}
    last_run = None
    for seq, rec in records:
        at = str(rec.get("at", ""))
        if not _in(at, start, end):
            continue
        change = rec.get("change") if isinstance(rec.get("change"), dict) else None
        if rec.get("kind") == "change_applied" and change and change.get("kind") == "revoke_membership":
            rules = [str(r.get("rule", "")) for r in change.get("reasons") or []]
            entry = {"audit_seq": seq, "at": at, "target": rec.get("target"), "role": rec.get("role"),
                     "group": (change.get("params") or {}).get("group"), "reason": rec.get("reason", ""),
                     "actor": rec.get("actor")}
            if any(r.startswith("review") for r in rules):
                revocations.append(entry)
            if "drift" in rules:
                drift_revoked.append(entry)
        if rec.get("kind") == "run_planned":
            last_run = at
            for n in (rec.get("after") or {}).get("notices") or []:
                if n.get("code") == "drift":
                    key = (str(n.get("target")), str(n.get("role")), str(n.get("message")))
                    found = drift_found.setdefault(key, {"target": key[0], "role": key[1], "message": key[2],
                                                         "first_seen": at, "last_seen": at})
                    found["last_seen"] = at
    drift = []
    for d in drift_found.values():
        fixed = next((r for r in drift_revoked if r["role"] == d["role"] and str(r["group"]) in d["message"]), None)
        if fixed:
            resolution = f"revoked (drift = revoke), audit seq {fixed['audit_seq']}"
        elif d["last_seen"] != last_run:
            resolution = f"no longer reported after {d['last_seen']}"
        else:
            resolution = "open: still reported by the last run of the quarter"
        drift.append({**d, "resolution": resolution})
    lats = [x for x in leaver_latencies(records) if start <= x.disabled_at < end]
    mappings = load_mappings(cfg.mappings_dir)
    exceptions = [{**x.to_json(), "active_at_generation": x.active(now),
                   "expires_within_quarter": start.date() <= x.expires < end.date()} for x in mappings.exceptions]
    return {
        "format": FORMAT,
        "quarter": quarter,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "generated_at": now.isoformat(),
        "campaigns": campaigns,
        "revocations": revocations,
        "leaver_latency": {"summary": latency_summary(lats), "leavers": [x.to_json() for x in lats]},
        "sod_exceptions": exceptions,
        "drift": drift,
    }


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: cell("" if r.get(c) is None else str(r.get(c))) for c in columns})


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.2f} h"


def _html(data: Mapping[str, Any], chain: Mapping[str, Any]) -> str:
    lat = data["leaver_latency"]["summary"]
    parts = [f"<h1>Access-control evidence {e(data['quarter'])}</h1>",
             f"<p class=\"meta\">Period {e(data['period']['start'])} to {e(data['period']['end'])}; generated "
             f"{e(data['generated_at'])}. Every file of this directory is listed with its SHA-256 in "
             "manifest.json, signed with the audit signing key.</p>", "<h2>Access reviews</h2>"]
    for c in data["campaigns"]:
        parts.append(f"<h3>Campaign {e(c['campaign'])}</h3><p>{c['decided']} of {c['items']} item(s) decided "
                     f"({c['coverage_pct']}%), {c['open']} open, {c['revoked']} revoked. Due {e(c['due_at'] or '-')}; "
                     + (f"signed off by {e(c['signed_off_by'])} at {e(c['signed_off_at'])}: "
                        f"&ldquo;{e(c['signoff_statement'])}&rdquo;" if c["signed_off_at"] else "<b>not signed off</b>")
                     + "</p>")
        parts.append(table(["reviewer", "items", "decided", "keep", "revoke", "open"],
                           [[r["reviewer"], r["items"], r["decided"], r["keep"], r["revoke"], r["open"]]
                            for r in c["reviewers"]]))
    if not data["campaigns"]:
        parts.append("<p><b>No access-review campaign in this quarter.</b></p>")
    parts += ["<h2>Revocations done (with audit references)</h2>",
              table(["audit seq", "at", "target", "login", "role", "reason"],
                    [[r["audit_seq"], r["at"], r["target"], r["role"], r["group"], r["reason"]]
                     for r in data["revocations"]]) if data["revocations"] else "<p>None.</p>",
              "<h2>Leaver latency (directory change to NOLOGIN)</h2>",
              f"<p>{lat['count']} leaver(s): p50 {_hours(lat['p50_seconds'])}, p95 {_hours(lat['p95_seconds'])}, "
              f"p99 {_hours(lat['p99_seconds'])}, max {_hours(lat['max_seconds'])} ({lat['exact']} from HR leave "
              f"dates, {lat['upper_bound']} upper bounds from the previous run).</p>",
              "<h2>SoD exceptions</h2>",
              table(["identity", "policy", "approver", "expires", "ticket", "reason", "where"],
                    [[x["identity"], x["policy"], x["approver"], x["expires"], x["ticket"], x["reason"], x["where"]]
                     for x in data["sod_exceptions"]]) if data["sod_exceptions"] else "<p>None.</p>",
              "<h2>Drift found and its resolution</h2>",
              table(["target", "role", "finding", "first seen", "last seen", "resolution"],
                    [[d["target"], d["role"], d["message"], d["first_seen"], d["last_seen"], d["resolution"]]
                     for d in data["drift"]]) if data["drift"] else "<p>None.</p>",
              "<h2>Audit chain verification</h2>",
              f"<p>{'<b class=ok>verified</b>' if chain['ok'] else '<b class=crit>FAILED</b>'}: {chain['count']} "
              f"record(s), head seq {chain['head_seq']} hash <code>{e(chain['head_hash'])}</code>; checkpoint signed "
              f"at generation: key {e(chain['key_id'])}. {e(chain['problem'] or '')}</p>"]
    return page(f"Evidence {data['quarter']}", "".join(parts))


def write_pack(cfg: Config, store: StateStore, quarter: str, out: Path, now: datetime | None = None) -> list[Path]:
    """Write and sign the pack; returns the files written (manifest last)."""
    if cfg.audit.signing_key is None:
        raise ConfigError("report evidence: the pack is signed with the audit signing key; configure "
                          "[audit] signing_key (provisioner audit keygen)")
    key = load_signing_key(cfg.audit.signing_key)
    now = now or datetime.now(UTC)
    try:
        quarter_bounds(quarter)
    except ValueError as exc:
        raise PackError(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise PackError(f"{out}: not empty; an evidence pack is written to a new directory")
    data = collect(cfg, store, quarter, now)
    checkpoint = sign_head(store.audit, key)
    report = verify_chain(store.audit, [("generation", checkpoint)], key.public_key())
    problem = report.problem.describe() if report.problem else "; ".join(report.checkpoint_problems)
    chain = {"ok": report.ok, "count": report.count, "head_seq": report.head_seq, "head_hash": report.head_hash,
             "problem": problem or None, "key_id": checkpoint.checkpoint.key_id,
             "checkpoint": checkpoint.to_json()}
    data["audit_chain"] = chain
    items = [{"campaign": c["campaign"], **i} for c in data["campaigns"] for i in c["item_rows"]]
    files = {
        "evidence.json": json.dumps(data, indent=2, sort_keys=True, default=str),
        "evidence.html": _html(data, chain),
        "public-key.pem": public_pem(key.public_key()),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    _write_csv(out / "review-items.csv", ["campaign", *EVIDENCE_COLUMNS], items)
    _write_csv(out / "revocations.csv", ["audit_seq", "at", "target", "role", "group", "actor", "reason"],
               data["revocations"])
    _write_csv(out / "leaver-latency.csv", ["target", "role", "directory_change", "disabled_at", "seconds", "basis",
                                            "audit_seq"], data["leaver_latency"]["leavers"])
    _write_csv(out / "sod-exceptions.csv", ["identity", "policy", "approver", "expires", "ticket", "reason", "where",
                                            "active_at_generation"], data["sod_exceptions"])
    _write_csv(out / "drift.csv", ["target", "role", "message", "first_seen", "last_seen", "resolution"],
               data["drift"])
    written = sorted(p for p in out.iterdir() if p.is_file())
    raw = key.public_key().public_bytes_raw()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "quarter": quarter,
        "generated_at": now.isoformat(),
        "files": {p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in written},
        "audit_head": {"seq": report.head_seq, "hash": report.head_hash},
        "checkpoint": checkpoint.to_json(),
        "key_id": key_id(raw),
        "algorithm": "Ed25519",
    }
    manifest["signature"] = key.sign(manifest_message(manifest)).hex()
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return [*written, path]


def verify_pack(directory: Path, public_key: Ed25519PublicKey) -> list[str]:
    """Every problem with the pack (empty: it verifies): signature, key, each file's digest,
    files missing or added."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{directory / 'manifest.json'}: cannot read: {exc}"]
    problems = []
    raw = public_key.public_bytes_raw()
    if manifest.get("key_id") != key_id(raw):
        problems.append(f"manifest.json: signed by key {manifest.get('key_id')}, not by the given key {key_id(raw)}")
    try:
        public_key.verify(bytes.fromhex(str(manifest.get("signature", ""))), manifest_message(manifest))
    except (InvalidSignature, ValueError):
        problems.append("manifest.json: the signature does not match its content (edited or forged)")
    listed = manifest.get("files") or {}
    for name, digest in sorted(listed.items()):
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
        elif "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: content differs from the manifest (edited after signing)")
    present = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if not p.is_dir())
    extra = sorted(name for name in present if name not in listed and name != "manifest.json")
    problems += [f"{name}: not listed in the manifest (added after signing)" for name in extra]
    return problems
