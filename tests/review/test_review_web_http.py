"""The review page's HTTP hardening, spoken to over a real socket (no browser):
production cookie flags and security headers, the Entra trusted-proxy header honoured
only from a trusted proxy, CSRF on every POST including sign-in, oversized bodies
refused, and a signed-off campaign frozen.  The browser test covers the flows."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.config import Config
from provisioner.core.privileges.spec import EMPTY
from provisioner.review.store import ReviewStore
from provisioner.review.web import ReviewWeb
from provisioner.review.webserver import make_review_server
from provisioner.store.state import StateStore


def config(**review: object) -> Config:
    return Config.model_validate({
        "sources": [{"type": "ldif", "name": "s", "path": "people.ldif"}],
        "targets": [{"type": "postgresql", "name": "pg", "dsn": "host=127.0.0.1"}],
        "review": {"owners": ["olivia"], **review},
    })


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, StateStore]]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    app = ReviewWeb(config(trusted_header="X-Forwarded-User", trusted_proxies=["127.0.0.9"]), store, None, EMPTY)
    server = make_review_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, store
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def request(port: int, method: str, path: str, body: str = "", headers: dict[str, str] | None = None,
            ) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body.encode(), headers={
        **({"Content-Type": "application/x-www-form-urlencoded"} if body else {}), **(headers or {})})
    resp = conn.getresponse()
    resp.read()
    return resp


def test_cookie_flags_and_security_headers(served: tuple[int, StateStore]) -> None:
    port, _ = served
    resp = request(port, "GET", "/login")
    assert resp.status == 200
    cookie = resp.getheader("Set-Cookie") or ""
    for flag in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
        assert flag in cookie, cookie
    csp = resp.getheader("Content-Security-Policy") or ""
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert resp.getheader("X-Frame-Options") == "DENY" and resp.getheader("Cache-Control") == "no-store"
    assert resp.getheader("Strict-Transport-Security")


def test_trusted_header_only_from_a_trusted_proxy(served: tuple[int, StateStore]) -> None:
    port, _ = served  # the proxy is 127.0.0.9; this client is 127.0.0.1: the header is a spoof
    resp = request(port, "GET", "/", headers={"X-Forwarded-User": "olivia"})
    assert resp.status == 303 and resp.getheader("Location") == "/login"


def test_post_without_token_and_oversized_body_refused(served: tuple[int, StateStore]) -> None:
    port, _ = served
    first = request(port, "GET", "/login")
    sid = (first.getheader("Set-Cookie") or "").split(";")[0]
    resp = request(port, "POST", "/login", "username=olivia&password=x", {"Cookie": sid})
    assert resp.status == 403, "sign-in form without the CSRF token"
    resp = request(port, "POST", "/login", "a=" + "x" * 70_000, {"Cookie": sid})
    assert resp.status == 413


def test_trusted_proxy_user_signs_in(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    rs = ReviewStore(store)
    rs.create("2026-Q4", "tester", "manager", {})
    app = ReviewWeb(config(trusted_header="X-Forwarded-User"), store, None, EMPTY)
    server = make_review_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/campaign/2026-Q4", headers={"X-Forwarded-User": "olivia"})
        resp = conn.getresponse()
        page = resp.read().decode()
        assert resp.status == 200 and 'id="who">olivia<' in page and "Sign off" in page
    finally:
        server.shutdown()
        server.server_close()
        store.close()
