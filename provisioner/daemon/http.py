"""The daemon's HTTP endpoint (stdlib only), on a loopback address.

``GET /healthz``   200 while the process runs.
``GET /readyz``    200 or 503 with a JSON detail (config reload, jobs, scheduler, leadership).
``GET /metrics``   Prometheus text format.
``POST /v1/runs``  ``Authorization: Bearer <daemon.trigger_token>``, body ``{"mode": "plan"|"apply",
                   "actor": "who asks", "reason": "ticket"}`` (actor required; reason required for
                   apply and checked against ``[audit] reason_pattern``; both recorded):
                   runs now and returns the plan as JSON (401 bad token, 403 apply in plan mode
                   or no token configured, 409 a run in progress, 503 stopping).

Hardening: every socket has a ``REQUEST_TIMEOUT`` (a request whose headers or body do
not arrive in time is dropped), at most ``MAX_CONNECTIONS`` are served at once (the
next gets 503 and is closed), ``Content-Length`` must be a plain decimal of at most
``MAX_BODY`` bytes (400 / 413), the body is read exactly and may nest JSON at most
``MAX_JSON_DEPTH`` levels, and the trigger token must be strong
(:func:`check_trigger_token`, at startup and on every reload).
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provisioner.config import Config
from provisioner.daemon.metrics import CONTENT_TYPE, Metrics
from provisioner.daemon.runner import Busy, Loaded, Runner
from provisioner.daemon.status import Status
from provisioner.engine.accountability import reason_problem
from provisioner.errors import ConfigError, ProvisionerError, RunInterrupted, SafetyViolation, SecretError
from provisioner.logs import log

MAX_BODY = 4096
"""Largest accepted request body, bytes."""
MAX_JSON_DEPTH = 8
"""Deepest accepted nesting of JSON arrays and objects in a request body."""
REQUEST_TIMEOUT = 10.0
"""Seconds a connection may stay silent (headers, body) before it is closed."""
MAX_CONNECTIONS = 32
"""Connections served at once; more are answered 503 and closed."""
MIN_TOKEN_LENGTH = 32
MIN_TOKEN_DISTINCT = 12


def check_trigger_token(cfg: Config) -> None:
    """Raise :class:`ConfigError` when ``daemon.trigger_token`` is set but cannot be
    resolved or is guessable (shorter than ``MIN_TOKEN_LENGTH`` characters, or fewer
    than ``MIN_TOKEN_DISTINCT`` distinct ones).  The token itself is never echoed."""
    ref = cfg.daemon.trigger_token
    if ref is None:
        return
    where = f"{cfg.path or 'configuration'}: daemon.trigger_token ({ref.ref})"
    try:
        token = ref.resolve()
    except SecretError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{where}: the token is {len(token)} characters; at least {MIN_TOKEN_LENGTH} are required "
            "(generate one with: openssl rand -hex 32)"
        )
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        raise ConfigError(
            f"{where}: the token has only {len(set(token))} distinct characters; at least {MIN_TOKEN_DISTINCT} "
            "are required (generate one with: openssl rand -hex 32)"
        )


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when arrays/objects in ``raw`` nest deeper than ``limit`` (brackets inside
    strings do not count); checked before parsing, so a hostile body cannot exhaust
    the parser's recursion."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def content_length(header: str | None) -> int:
    """The request's body length: absent means 0; anything but plain decimal digits is refused."""
    if header is None:
        return 0
    if not header.isascii() or not header.isdigit():
        raise BadRequest(400, f"bad Content-Length {header[:20]!r}: expected a non-negative decimal number")
    length = int(header)
    if length > MAX_BODY:
        raise BadRequest(413, f"request body of {length} bytes refused: at most {MAX_BODY} bytes")
    return length


class Api:
    def __init__(self, status: Status, metrics: Metrics, runner: Runner, current: Callable[[], Loaded]) -> None:
        self.status = status
        self.metrics = metrics
        self.runner = runner
        self.current = current

    def authorized(self, header: str | None) -> tuple[int, str] | None:
        """None when the bearer token matches; else (status, message)."""
        ref = self.current().cfg.daemon.trigger_token
        if ref is None:
            return 403, "triggers are disabled: set daemon.trigger_token"
        try:
            expected = ref.resolve().encode()
        except SecretError as exc:
            return 403, f"triggers are disabled: {exc}"
        scheme, _, given = (header or "").partition(" ")
        ok = scheme.lower() == "bearer" and bool(expected) and hmac.compare_digest(given.strip().encode(), expected)
        return None if ok else (401, "missing or wrong bearer token")

    def trigger(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        mode = body.get("mode", "plan")
        if mode not in ("plan", "apply"):
            return 400, {"error": 'mode must be "plan" or "apply"'}
        cfg = self.current().cfg
        if mode == "apply" and cfg.daemon.mode != "apply":
            return 403, {"error": 'this daemon only plans: daemon.mode is "plan"'}
        actor, reason = body.get("actor"), body.get("reason", "")
        if not isinstance(actor, str) or not actor.strip() or len(actor) > 200:
            return 400, {"error": '"actor" is required: who asks for this run (recorded in the audit trail)'}
        if not isinstance(reason, str) or len(reason) > 1000:
            return 400, {"error": '"reason" must be a string'}
        if mode == "apply" and (problem := reason_problem(cfg, reason)) is not None:
            return 400, {"error": f'"reason": {problem}'}
        if self.status.stopping:
            return 503, {"error": "the daemon is stopping"}
        try:
            result = self.runner.run(mode, "http", actor=actor.strip(), reason=reason)
        except Busy:
            return 409, {"error": "a run is in progress; try again later"}
        except RunInterrupted:
            return 503, {"error": "the daemon is stopping"}
        except SafetyViolation as exc:
            return 422, {"error": type(exc).__name__, "violations": exc.violations}
        except ProvisionerError as exc:
            return 500, {"error": type(exc).__name__, "message": str(exc)}
        return 200, result.to_json()


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "provisioner"
        sys_version = ""
        timeout = REQUEST_TIMEOUT

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(REQUEST_TIMEOUT)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http_request", line=format % args)

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="provisioner"')
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: Any) -> None:
            self._send(code, json.dumps(data, sort_keys=True, default=str).encode())

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._json(200, {"status": "alive"})
            elif self.path == "/readyz":
                ready, detail = api.status.readiness()
                self._json(200 if ready else 503, detail)
            elif self.path == "/metrics":
                self._send(200, api.metrics.render(), CONTENT_TYPE)
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/v1/runs":
                self._json(404, {"error": "not found"})
                return
            denied = api.authorized(self.headers.get("Authorization"))
            if denied is not None:
                log.warning("trigger_refused", status=denied[0], peer=self.client_address[0])
                self._json(denied[0], {"error": denied[1]})
                return
            try:
                body = self._body()
            except BadRequest as exc:
                log.warning("trigger_bad_request", status=exc.status, peer=self.client_address[0], error=str(exc))
                self.close_connection = True
                self._json(exc.status, {"error": str(exc)})
                return
            code, data = api.trigger(body)
            log.info("trigger_handled", status=code, mode=body.get("mode", "plan"))
            self._json(code, data)

        def _body(self) -> dict[str, Any]:
            if self.headers.get("Transfer-Encoding"):
                raise BadRequest(400, "Transfer-Encoding is not supported: send Content-Length")
            length = content_length(self.headers.get("Content-Length"))
            try:
                raw = self.rfile.read(length) if length else b""
            except TimeoutError:
                raw = b""
            if len(raw) != length:
                raise BadRequest(400, f"bad request body: {len(raw)} of {length} bytes arrived in time")
            if json_depth_exceeds(raw, MAX_JSON_DEPTH):
                raise BadRequest(400, f"bad request body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
            try:
                body = json.loads(raw or b"{}")
            except (ValueError, RecursionError) as exc:
                raise BadRequest(400, f"bad request body: {exc}") from None
            if not isinstance(body, dict):
                raise BadRequest(400, "bad request body: expected a JSON object")
            return body

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, at most ``MAX_CONNECTIONS`` at once; the next is refused."""
        if not self._slots.acquire(blocking=False):
            log.warning("http_connection_refused", peer=str(client_address[0]), limit=MAX_CONNECTIONS)
            try:
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 38\r\nConnection: close\r\n\r\n"
                    b'{"error": "too many open connections"}'
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed mid-request (reset, broken pipe): one log event, not a traceback on stderr."""
        exc = sys.exc_info()[1]
        log.warning("http_connection_failed", peer=str(client_address[0]), error=repr(exc))

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpServer:
    def __init__(self, listen: str, api: Api) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        cls = _Server6 if ":" in host else _Server
        try:
            self.server: ThreadingHTTPServer = cls((host, int(port)), _handler(api))
        except OSError as exc:
            raise ConfigError(f"daemon.listen = {listen!r}: cannot listen: {exc.strerror}") from exc
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
