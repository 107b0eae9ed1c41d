"""The daemon's HTTP endpoint under hostile clients: a real server on a free port,
raw sockets for what urllib will not send (half-open requests, bad Content-Length)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import load_config
from provisioner.daemon import http
from provisioner.daemon.http import Api, HttpServer, check_trigger_token
from provisioner.daemon.metrics import Metrics
from provisioner.daemon.status import Status
from provisioner.errors import ConfigError
from tests.daemon.test_units import cfg_with

STRONG = "k7Qw9-x2Lm4Rt8Zp1Vb6Nc3Hs5Jd0Fg2Ya9Ue7"


class _Result:
    run_id = "r1"

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class _Runner:
    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.actors: list[str | None] = []

    def run(self, mode: str, trigger: str, actor: str | None = None, reason: str = "") -> _Result:
        self.runs.append((mode, trigger))
        self.actors.append(actor)
        return _Result()


class _Loaded:
    def __init__(self, path: Path) -> None:
        self.cfg = load_config(path)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpServer, _Runner]]:
    monkeypatch.setenv("PROVISIONER_TEST_STRONG_TOKEN", STRONG)
    monkeypatch.setattr(http, "REQUEST_TIMEOUT", 1.0)
    loaded = _Loaded(cfg_with(tmp_path, '[daemon]\ntrigger_token = "env:PROVISIONER_TEST_STRONG_TOKEN"\n'))
    runner = _Runner()
    api = Api(Status("c.toml"), Metrics(), runner, lambda: loaded)  # type: ignore[arg-type, return-value]
    srv = HttpServer("127.0.0.1:0", api)
    srv.start()
    try:
        yield srv, runner
    finally:
        srv.stop()


def raw(srv: HttpServer, payload: bytes, wait: float = 5.0) -> bytes:
    host, port = srv.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # a refusal may answer and close before the request is sent or shut
            pass
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # closed with our request unread: what came before stands
            pass
    return b"".join(chunks)


def post(body: bytes, length: str | None = None, token: str = STRONG) -> bytes:
    head = f"POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_valid_trigger_still_runs(server: tuple[HttpServer, _Runner]) -> None:
    srv, runner = server
    body = json.dumps({"mode": "plan", "actor": " alice "}).encode()  # a trigger says who asks (issue 17)
    response = raw(srv, post(body, str(len(body))))
    assert status_of(response) == 200 and runner.runs == [("plan", "http")] and runner.actors == ["alice"]


@pytest.mark.parametrize(
    ("length", "code", "needle"),
    [
        ("-1", 400, b"Content-Length"),
        ("abc", 400, b"Content-Length"),
        ("1e3", 400, b"Content-Length"),
        (" 12", 400, b"Content-Length"),
        ("99999999", 413, b"at most"),
    ],
)
def test_bad_content_length_is_refused_before_reading(
    server: tuple[HttpServer, _Runner], length: str, code: int, needle: bytes
) -> None:
    srv, runner = server
    response = raw(srv, post(b'{"mode": "plan"}', length))
    assert status_of(response) == code and needle in response
    assert runner.runs == []


def test_deeply_nested_json_is_a_400_not_a_crash(server: tuple[HttpServer, _Runner]) -> None:
    srv, runner = server
    body = b"[" * 2000 + b"]" * 2000
    assert len(body) <= http.MAX_BODY
    response = raw(srv, post(body, str(len(body))))
    assert status_of(response) == 400 and b"nested" in response
    nested_object = b'{"mode": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}"
    response = raw(srv, post(nested_object, str(len(nested_object))))
    assert status_of(response) == 400 and runner.runs == []
    # brackets inside strings do not count
    fine = json.dumps({"mode": "plan", "actor": "alice", "note": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}).encode()
    assert status_of(raw(srv, post(fine, str(len(fine))))) == 200 and runner.runs == [("plan", "http")]


def test_short_body_times_out_with_400(server: tuple[HttpServer, _Runner]) -> None:
    srv, runner = server
    response = raw(srv, post(b'{"mode"', "100"))
    assert status_of(response) == 400 and runner.runs == []


def test_half_open_requests_are_dropped_after_the_timeout(server: tuple[HttpServer, _Runner]) -> None:
    srv, _ = server
    host, port = srv.address.rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
    try:
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        for s in held:
            assert s.recv(1024) == b"", "the server closes a request whose headers never end"
        assert time.monotonic() - started < 5, "half-open requests must be cut after daemon REQUEST_TIMEOUT"
    finally:
        for s in held:
            s.close()
    # and the server still answers
    assert status_of(raw(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200


def test_connections_beyond_the_limit_are_refused_at_once(
    server: tuple[HttpServer, _Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, _ = server
    monkeypatch.setattr(http, "REQUEST_TIMEOUT", 30.0)  # the held connections outlive a slow machine
    host, port = srv.address.rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(http.MAX_CONNECTIONS)]
    try:
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(1.0)
        response = raw(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait=10)
        assert status_of(response) == 503 and b"too many open connections" in response
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        ("x", "1 characters"),
        ("a" * 40, "distinct characters"),
        ("correct-horse", "13 characters"),
    ],
)
def test_weak_trigger_token_is_refused_at_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, needle: str
) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_WEAK_TOKEN", token)
    cfg = load_config(cfg_with(tmp_path, '[daemon]\ntrigger_token = "env:PROVISIONER_TEST_WEAK_TOKEN"\n'))
    with pytest.raises(ConfigError) as info:
        check_trigger_token(cfg)
    message = str(info.value)
    assert "daemon.trigger_token" in message and needle in message
    assert len(token) < 3 or token not in message, "the token itself is never echoed"


def test_unresolvable_trigger_token_is_refused_at_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_TEST_NO_TOKEN", raising=False)
    cfg = load_config(cfg_with(tmp_path, '[daemon]\ntrigger_token = "env:PROVISIONER_TEST_NO_TOKEN"\n'))
    with pytest.raises(ConfigError, match=r"daemon\.trigger_token"):
        check_trigger_token(cfg)


def test_strong_trigger_token_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_STRONG_TOKEN", STRONG)
    cfg = load_config(cfg_with(tmp_path, '[daemon]\ntrigger_token = "env:PROVISIONER_TEST_STRONG_TOKEN"\n'))
    check_trigger_token(cfg)
    check_trigger_token(load_config(cfg_with(tmp_path, "")))  # no token: triggers disabled, fine
