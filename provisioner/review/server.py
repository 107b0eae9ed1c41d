"""Serving the review page: the threaded WSGI server, ``review serve`` and the daemon's thread."""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from provisioner.config import Config
from provisioner.logs import log
from provisioner.review.web import Clock, ReviewWeb
from provisioner.store.state import StateStore


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # access log through structlog, no query strings
        log.info("review_web_request", client=self.client_address[0], request=self.requestline.split("?")[0])


def make_review_server(app: ReviewWeb, host: str, port: int) -> WSGIServer:
    return make_server(host, port, app, server_class=_Server, handler_class=_Quiet)


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_app(cfg: Config, store: StateStore, clock: Clock | None = None) -> ReviewWeb:
    """The review page of ``cfg``: LDAP sign-in against the first LDAP source, and/or the
    trusted proxy header (``[review] trusted_header``) for Entra ID."""
    from provisioner.config import LdapSourceConfig
    from provisioner.errors import ConfigError
    from provisioner.mappings import load_mappings
    from provisioner.sources.ldap_auth import LdapAuthenticator

    source = next((s for s in cfg.sources if isinstance(s, LdapSourceConfig)), None)
    if source is None and not cfg.review.trusted_header:
        raise ConfigError("review serve: no LDAP source to sign reviewers in against; for Entra ID set "
                          "[review] trusted_header (the reverse proxy's signed-in-user header)")
    host, _ = listen_address(cfg.review.listen)
    if not cfg.review.secure_cookies and host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(f"[review] secure_cookies = false is only allowed on loopback, not on {host}")
    auth = LdapAuthenticator(source) if source is not None else None

    def authenticate(username: str, password: str) -> str:
        if auth is None:
            raise ConfigError("no LDAP source for password sign-in")
        return auth.authenticate(username, password).username

    def exists(username: str) -> bool:
        return auth is None or auth.find(username) is not None

    privileges = load_mappings(cfg.mappings_dir).privileges
    return ReviewWeb(cfg, store, authenticate if auth is not None else None, privileges, clock, exists)


class ReviewServer:
    """The review page in a background thread (the daemon, with ``[review] serve = true``)."""

    def __init__(self, cfg: Config, store: StateStore) -> None:
        from provisioner.errors import ConfigError

        host, port = listen_address(cfg.review.listen)
        try:
            self.server = make_review_server(build_app(cfg, store), host, port)
        except OSError as exc:
            raise ConfigError(f"review.listen = {cfg.review.listen!r}: cannot listen: {exc.strerror}") from exc
        self._thread = threading.Thread(target=self.server.serve_forever, name="review-web", daemon=True)

    @classmethod
    def configured(cls, cfg: Config, store: StateStore) -> ReviewServer | None:
        return cls(cfg, store) if cfg.review.serve else None

    @property
    def address(self) -> str:
        return f"{self.server.server_address[0]!s}:{self.server.server_port}"

    def start(self) -> None:
        self._thread.start()
        log.info("review_web_started", listen=self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
