"""The daemon serves the reviewer page when ``[review] serve = true`` (real daemon process,
slapd and PostgreSQL), with production cookie flags, and stops it on SIGTERM."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.daemon.support import DaemonProc, daemonize, daemons, free_port, one_trader, wait_for
from tests.support.fixtures import LdapOu

__all__ = ["daemons"]


def test_daemon_serves_the_review_page(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    setup = one_trader(tmp_path, ldap_ou, role_prefix)
    review_port = free_port()
    port = daemonize(setup, extra=f'\n[review]\nserve = true\nlisten = "127.0.0.1:{review_port}"\n')
    daemon = daemons(setup.path, port).wait_up()

    def page() -> tuple[int, str, str] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{review_port}/login", timeout=10) as resp:
                return resp.status, resp.read().decode(), resp.headers.get("Set-Cookie", "")
        except OSError:
            return None

    status, body, cookie = wait_for("the review page", page)
    assert status == 200 and 'id="sign-in"' in body
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert any(e.get("event") == "review_web_started" for e in daemon.events())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert page() is None, "stopped with the daemon"
