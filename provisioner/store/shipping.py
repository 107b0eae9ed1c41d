"""Checkpoints leave the host: a directory on another volume, syslog, a webhook.

Each new checkpoint (one per audit append of a process holding the signing key)
goes to every configured sink right after its transaction commits.  A failing
sink is logged (``audit_checkpoint_ship_failed``) and never fails the run; the
other sinks still get the checkpoint.  ``audit verify --checkpoints DIR`` reads
the directory back (see docs/audit.md).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from provisioner.config import AuditConfig
from provisioner.errors import ConfigError, SecretError
from provisioner.logs import log
from provisioner.secrets import SecretRef
from provisioner.store.audit import StoredCheckpoint
from provisioner.store.signing import checkpoint_from_file

FILE_PREFIX = "checkpoint-"


def file_name(stored: StoredCheckpoint) -> str:
    return f"{FILE_PREFIX}{stored.checkpoint.n:012d}.json"


def checkpoint_text(stored: StoredCheckpoint) -> str:
    return json.dumps(stored.to_json(), indent=2, sort_keys=True) + "\n"


class DirectorySink:
    """One file per checkpoint, written once (never overwritten), fsynced."""

    def __init__(self, directory: Path) -> None:
        self.name = f"dir:{directory}"
        self.directory = directory

    def __call__(self, stored: StoredCheckpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / file_name(stored)
        tmp = self.directory / f".{final.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(checkpoint_text(stored))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)  # fails if it exists: a shipped checkpoint is never replaced
            except FileExistsError:
                if final.read_text(encoding="utf-8") != checkpoint_text(stored):
                    raise OSError(f"{final} exists with different content; not replaced") from None
        finally:
            tmp.unlink(missing_ok=True)
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class SyslogSink:
    """One line per checkpoint to syslog (facility authpriv), a private handler."""

    def __init__(self, address: str) -> None:
        self.name = f"syslog:{address}"
        where: str | tuple[str, int] = address
        if not address.startswith("/"):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"audit.checkpoint_syslog: {address!r} is neither a socket path nor host:port")
            where = (host, int(port))
        self._handler = logging.handlers.SysLogHandler(
            address=where, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV
        )
        self._handler.ident = "provisioner-audit: "

    def __call__(self, stored: StoredCheckpoint) -> None:
        line = json.dumps(stored.to_json(), sort_keys=True)
        record = logging.LogRecord("provisioner.audit", logging.WARNING, __file__, 0, "checkpoint %s", (line,), None)
        self._handler.emit(record)


class WebhookSink:
    def __init__(self, url: SecretRef, timeout: float = 5.0) -> None:
        self.name = "webhook"
        self._url = url
        self._timeout = timeout

    def __call__(self, stored: StoredCheckpoint) -> None:
        try:
            url = self._url.resolve()
        except SecretError as exc:
            raise OSError(str(exc)) from None
        if not url.startswith(("https://", "http://")):
            raise OSError(f"{self._url.ref} does not hold an http(s) URL")
        body = json.dumps({"provisioner_audit_checkpoint": stored.to_json()}).encode()
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310
                resp.read(1024)
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, ValueError) as exc:
            raise OSError(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None


Sink = Callable[[StoredCheckpoint], None]


class Shipper:
    """Every configured sink, each failure logged and counted; never raises."""

    def __init__(self, sinks: list[tuple[str, Sink]]) -> None:
        self.sinks = sinks
        self.failures = 0

    def __call__(self, stored: StoredCheckpoint) -> None:
        for name, sink in self.sinks:
            try:
                sink(stored)
            except Exception as exc:  # a sink never fails the run; the failure is logged loudly
                self.failures += 1
                log.error("audit_checkpoint_ship_failed", sink=name, n=stored.checkpoint.n,
                          error=type(exc).__name__, message=str(exc))
            else:
                log.info("audit_checkpoint_shipped", sink=name, n=stored.checkpoint.n,
                         head_seq=stored.checkpoint.head_seq)


def shipper(cfg: AuditConfig, base_dir: Path) -> Shipper | None:
    sinks: list[tuple[str, Sink]] = []
    if cfg.checkpoint_dir:
        d = Path(cfg.checkpoint_dir)
        sink = DirectorySink(d if d.is_absolute() else base_dir / d)
        sinks.append((sink.name, sink))
    if cfg.checkpoint_syslog:
        syslog = SyslogSink(cfg.checkpoint_syslog)
        sinks.append((syslog.name, syslog))
    if cfg.checkpoint_webhook is not None:
        hook = WebhookSink(cfg.checkpoint_webhook)
        sinks.append((hook.name, hook))
    return Shipper(sinks) if sinks else None


def read_shipped(path: Path) -> Iterator[tuple[str, StoredCheckpoint]]:
    """Checkpoint files in ``path`` (a directory of shipped files, or one file)."""
    files = sorted(path.glob(f"{FILE_PREFIX}*.json")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise ConfigError(f"{path}: no shipped checkpoint files ({FILE_PREFIX}*.json)")
    for f in files:
        yield str(f), checkpoint_from_file(f)
