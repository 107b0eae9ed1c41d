"""The daemon's HTTP endpoint (stdlib only), on a loopback address.

``GET /healthz``   200 while the process runs.
``GET /readyz``    200 or 503 with a JSON detail (config reload, jobs, scheduler, leadership).
``GET /metrics``   Prometheus text format.
``POST /v1/runs``  ``Authorization: Bearer <daemon.trigger_token>``, body ``{"mode": "plan"|"apply",
                   "actor": "who asks", "reason": "ticket"}`` (actor required; reason required for
                   apply and checked against ``[audit] reason_pattern``; both recorded):
                   runs now and returns the plan as JSON (401 bad token, 403 apply in plan mode
                   or no token configured, 409 a run in progress, 503 stopping).
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provisioner.cli.accountability import reason_problem
from provisioner.daemon.metrics import CONTENT_TYPE, Metrics
from provisioner.daemon.runner import Busy, Loaded, Runner
from provisioner.daemon.status import Status
from provisioner.errors import ConfigError, ProvisionerError, RunInterrupted, SafetyViolation, SecretError
from provisioner.logs import log

MAX_BODY = 4096


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
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, MAX_BODY)) if length else b"{}"
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as exc:
                self._json(400, {"error": f"bad request body: {exc}"})
                return
            code, data = api.trigger(body)
            log.info("trigger_handled", status=code, mode=body.get("mode", "plan"))
            self._json(code, data)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


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
