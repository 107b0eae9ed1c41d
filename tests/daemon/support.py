"""Run ``provisioner daemon`` as a subprocess in tests, and talk to its HTTP endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.e2e import Setup, make_setup, person
from tests.support.fixtures import LdapOu

EXE = Path(sys.executable).with_name("provisioner")
TOKEN_ENV = "PROVISIONER_TEST_TRIGGER_TOKEN"
TRIGGER_TOKEN = "daemon-test-token-5f0c9e2ab7d14c38a9e1"
"""A token the startup check accepts (at least 32 characters, 12 distinct)."""
T = TypeVar("T")


def one_trader(tmp_path: Path, ldap_ou: LdapOu, prefix: str) -> Setup:
    """The daemon tests' starting point: alice, an equity trader, and the least-privilege setup."""
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    return make_setup(tmp_path, ldap_ou.config(name=f"{prefix}src"), prefix)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemonize(
    setup: Setup, *, mode: str = "apply", interval: str = "2s", extra: str = "", state_url: str | None = None
) -> int:
    """Give the setup's target a unique name, log at info, and append a [daemon] section.
    Returns the port the daemon will listen on."""
    text = setup.path.read_text()
    text = text.replace('name = "pg"', f'name = "{setup.prefix}pg"').replace(
        'log_level = "warning"', 'log_level = "info"'
    )
    if state_url is not None:
        start = text.index("[state]")
        end = text.index("\n\n", start)
        text = text[:start] + f"[state]\nurl = {json.dumps(state_url)}" + text[end:]
    port = free_port()
    text += f"""
[daemon]
mode = "{mode}"
listen = "127.0.0.1:{port}"
trigger_token = "env:{TOKEN_ENV}"
retry_max_delay = "5s"
{extra}
[daemon.jobs.reconcile]
interval = "{interval}"
misfire_grace_time = "5s"
"""
    setup.path.write_text(text)
    return port


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0, every: float = 0.3) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


class DaemonProc:
    def __init__(self, config: Path, port: int, log: Path, token: str) -> None:
        self.config, self.port, self.log_path, self.token = config, port, log, token
        env = {**os.environ, TOKEN_ENV: token}
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(EXE), "daemon", "-c", str(config)], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        code, body = self.request("GET", path)
        return code, json.loads(body)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def wait_up(self) -> DaemonProc:
        wait_for("the daemon's /healthz", self.alive)
        return self

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def non_json_lines(self) -> list[str]:
        """Lines of the daemon's output that are not a JSON object (log_format = "json")."""
        bad = []
        for line in self.logs().splitlines():
            try:
                if not isinstance(json.loads(line), dict):
                    bad.append(line)
            except ValueError:
                if line.strip():
                    bad.append(line)
        return bad

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 120.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    """``daemons(config_path, port, token=...)`` starts a daemon; all are killed afterwards."""
    started: list[DaemonProc] = []

    def start(config: Path, port: int, token: str = TRIGGER_TOKEN, name: str = "daemon") -> DaemonProc:
        proc = DaemonProc(config, port, tmp_path / f"{name}-{len(started)}.log", token)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
