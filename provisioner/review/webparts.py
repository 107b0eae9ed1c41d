"""The reviewer page's building blocks: server-side sessions, responses, form and cookie
parsing, the page frame and what a role allows (see :mod:`provisioner.review.web`)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from provisioner.core.governance.review import ItemState
from provisioner.core.privileges.catalog import Sensitivity
from provisioner.core.privileges.spec import PrivilegeCatalog
from provisioner.review.worksheets import e

MAX_BODY = 64 * 1024
MAX_SESSIONS = 10_000
COOKIE = "provisioner_review"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1a1a1a;background:#f6f7f9}
header{background:#14324f;color:#fff;padding:.8em 2em;display:flex;justify-content:space-between;align-items:center}
header form{margin:0}main{padding:1em 2em}h1{font-size:1.3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%;font-size:.88em;background:#fff}
th,td{border:1px solid #d0d4da;padding:.35em .5em;text-align:left;vertical-align:top}th{background:#eef0f3}
tr.sod td{background:#fff3f0}.crit{color:#a00000;font-weight:600}.high{color:#b35900;font-weight:600}
.meta{color:#555}.ok{color:#0a6b2d}.bad{color:#a00000}.msg{padding:.6em 1em;border-radius:4px;margin:.6em 0}
.msg.error{background:#fde8e8;border:1px solid #e0a0a0}.msg.info{background:#e8f4fd;border:1px solid #a0c4e0}
progress{width:16em}input[type=text],input[type=password]{padding:.3em;width:14em}
button{padding:.3em .8em;cursor:pointer}td.decide{white-space:nowrap}code{font-size:.85em}
"""


@dataclass
class Session:
    csrf: str
    seen: datetime
    user: str = ""
    flash: list[tuple[str, str]] = field(default_factory=list)


class Sessions:
    """Server-side sessions; an id is only ever a random token."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle = idle_seconds
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, sid: str | None, now: datetime) -> tuple[str, Session, bool]:
        """(id, session, expired): a fresh anonymous session when ``sid`` is unknown or idle too long."""
        with self._lock:
            s = self._by_id.get(sid or "")
            expired = False
            if s is not None and (now - s.seen).total_seconds() > self.idle:
                del self._by_id[sid or ""]
                expired, s = bool(s.user), None
            if s is None or sid is None:
                if len(self._by_id) >= MAX_SESSIONS:
                    self._purge(now)
                sid = secrets.token_urlsafe(32)
                s = self._by_id[sid] = Session(secrets.token_urlsafe(32), now)
            s.seen = now
            return sid, s, expired

    def rotate(self, sid: str, user: str, now: datetime) -> tuple[str, Session]:
        """Sign-in: a new id and CSRF token (no session fixation)."""
        with self._lock:
            old = self._by_id.pop(sid, None)
            new = secrets.token_urlsafe(32)
            s = self._by_id[new] = Session(secrets.token_urlsafe(32), now, user, old.flash if old else [])
            return new, s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def _purge(self, now: datetime) -> None:
        for k in [k for k, s in self._by_id.items() if (now - s.seen).total_seconds() > self.idle]:
            del self._by_id[k]


@dataclass(frozen=True, slots=True)
class Response:
    status: HTTPStatus
    body: str = ""
    location: str = ""
    cookies: tuple[str, ...] = ()


def allows(privileges: PrivilegeCatalog, access: str) -> list[str]:
    """What ``access`` allows through the role catalog: ``SELECT, INSERT on tables trading.orders``."""
    out: list[str] = []
    for role in privileges.paths(access):
        model = privileges.roles.get(role)
        for g in model.grants if model else ():
            objects = ", ".join(g.objects) if g.objects is not None else "all"
            where = f"{g.schema}." if g.schema and g.objects is not None else (f"{g.schema}: " if g.schema else "")
            cols = f" ({', '.join(g.columns)})" if g.columns else ""
            out.append(f"{', '.join(g.privileges)} on {g.kind} {where}{objects}{cols}")
    return out


# --------------------------------------------------------------------------- helpers


def low(st: ItemState) -> bool:
    return st.item.sensitivity in (Sensitivity.LOW.name.lower(), "")


def session_cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def read_form(environ: Mapping[str, Any]) -> dict[str, str] | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length > 0 else ""
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def same_origin(environ: Mapping[str, Any]) -> bool:
    """A browser's Origin (when sent) names this host (a second check beside the CSRF token)."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        return origin is None
    host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", "")
    return bool(str(origin).split("://", 1)[-1] == host)


def flash(s: Session) -> str:
    out = "".join(f"<p class=\"msg {e(kind)}\" role=\"status\">{e(text)}</p>" for kind, text in s.flash)
    s.flash.clear()
    return out


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


