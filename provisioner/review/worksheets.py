"""Per-reviewer worksheets (CSV and self-contained HTML) and reading decisions back."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from provisioner.core.governance.review import COLUMNS, ItemState
from provisioner.errors import PermanentError

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#1a1a1a}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #c8c8c8;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr.sod td{background:#fff3f0}
.crit{color:#a00000;font-weight:600}.high{color:#b35900}.meta{color:#555}
code{font-size:.85em}
"""


class WorksheetError(PermanentError):
    """A worksheet cannot be read or was rejected; nothing from it was imported."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unassigned"


def person_order(st: ItemState) -> tuple[str, str, str, str]:
    """Worksheet order: a person's items together (identity, target, login role, access)."""
    i = st.item
    return (i.identity.casefold(), i.target, i.role, i.access)


def write_csv(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(str(row.get(k, ""))) for k in COLUMNS})


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def cell(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ (or a tab or carriage return) as formulas:
    defuse them, plain numbers excepted (never part of a signed value)."""
    if value[:1] in FORMULA_STARTS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{e(classes[i])}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def worksheet_html(campaign: str, reviewer: str, states: Sequence[ItemState]) -> str:
    headers = ["item", "identity", "target", "role", "access", "what it allows", "sensitivity",
               "provenance", "attributes", "SoD", "granted", "decision", "comment"]
    rows, classes = [], []
    for st in states:
        r = st.item.row()
        rows.append([r["item_id"], r["identity"], r["target"], r["role"], r["access"], r["description"],
                     r["sensitivity"], r["provenance"], r["rules"], r["sod"], r["granted_at"],
                     st.decision or "", st.comment])
        classes.append("sod" if st.item.sod else "")
    body = (
        f"<h1>Access review {e(campaign)}: worksheet for {e(reviewer)}</h1>"
        f"<p class=\"meta\">{len(states)} item(s). For every row decide <b>keep</b> or <b>revoke</b> "
        "(with a comment) in the CSV worksheet of the same name and hand it back; rows are signed and "
        "an edited row rejects the whole file. Rows shaded red take part in a segregation-of-duties "
        "conflict.</p>" + table(headers, rows, classes)
    )
    return page(f"Access review {campaign} - {reviewer}", body)


def export(campaign: str, states: Sequence[ItemState], out: Path) -> list[Path]:
    """One CSV and one HTML worksheet per reviewer; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    by: dict[str, list[ItemState]] = {}
    for st in sorted(states, key=person_order):
        by.setdefault(st.item.reviewer, []).append(st)
    written = []
    for reviewer in sorted(by):
        base = out / f"{slug(campaign)}-{slug(reviewer)}"
        rows = []
        for st in by[reviewer]:
            row = st.item.row()
            row.update(decision=st.decision, comment=st.comment)
            rows.append(row)
        write_csv(base.with_suffix(".csv"), rows)
        base.with_suffix(".html").write_text(worksheet_html(campaign, reviewer, by[reviewer]), encoding="utf-8")
        written += [base.with_suffix(".csv"), base.with_suffix(".html")]
    return written


def read_csv(path: Path) -> tuple[list[tuple[int, dict[str, str]]], str]:
    """Rows with their line numbers, and the file's sha256."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorksheetError(f"{path}: cannot read worksheet: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in ("item_id", "decision", "comment", "signature") if c not in (reader.fieldnames or [])]
    if missing:
        raise WorksheetError(f"{path}: line 1: missing column(s) {missing}; nothing imported")
    rows = []
    try:
        for row in reader:
            clean = {k: _undefuse(v or "") for k, v in row.items() if k is not None}
            rows.append((reader.line_num, clean))
    except csv.Error as exc:
        raise WorksheetError(f"{path}: line {reader.line_num}: not valid CSV: {exc}; nothing imported") from exc
    return rows, "sha256:" + hashlib.sha256(raw).hexdigest()


def _undefuse(value: str) -> str:
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value
