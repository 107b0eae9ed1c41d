"""Ed25519 checkpoints of the audit chain: keys, signing, verification.

The private key is a PEM PKCS#8 file named by a SecretRef (``[audit]
signing_key = "file:/etc/provisioner/audit-key.pem"``).  A checkpoint signs
``Checkpoint.message()``; its ``key_id`` is the fingerprint of the public key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from provisioner.core.governance.audit import ChainProblem, ChainVerifier, Checkpoint, CoverageProblem, coverage, key_id
from provisioner.errors import ConfigError, SecretError
from provisioner.secrets import SecretRef
from provisioner.store.audit import AuditLog, StoredCheckpoint
from provisioner.store.signer import Signer


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_signing_key(ref: SecretRef, where: str = "audit.signing_key") -> Ed25519PrivateKey:
    try:
        text = ref.resolve()
    except SecretError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {ref.ref} is not an unencrypted PEM PKCS#8 private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{where}: {ref.ref} is a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """A PEM public key (or a PEM private key, whose public half is used)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read public key: {exc.strerror}") from exc
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            key: object = private.public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM Ed25519 key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def generate_key(out: str | Path) -> Ed25519PublicKey:
    """Write a new PKCS#8 PEM private key readable by its owner only (0600); refuse to overwrite."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create key file: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(out, 0o600)
    return key.public_key()


def sign_head(log: AuditLog, key: Ed25519PrivateKey, adopt: bool = False) -> StoredCheckpoint:
    """Sign the current head of the chain with ``key`` and store the checkpoint.

    Refused (:class:`AuditTampered`) when records after the newest checkpoint were
    signed by nobody, unless ``adopt`` (after a full verify; see AuditLog.sign_head)."""
    return AuditLog(log.engine, Signer(key), log.on_checkpoint).sign_head(adopt=adopt)


def checkpoint_from_file(path: str | Path) -> StoredCheckpoint:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return StoredCheckpoint(Checkpoint.from_json(data), str(data["signature"]), str(data["public_key"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a provisioner audit checkpoint: {exc}") from exc


def signature_problem(stored: StoredCheckpoint, trusted: Ed25519PublicKey | None) -> str | None:
    """Why the checkpoint's signature cannot be trusted, or None."""
    cp = stored.checkpoint
    if trusted is None:
        return "no public key to check it with (give --public-key or configure [audit] signing_key)"
    if cp.key_id != key_id(_raw(trusted)):
        return f"signed by key {cp.key_id}, not by the trusted key {key_id(_raw(trusted))}"
    try:
        trusted.verify(bytes.fromhex(stored.signature), cp.message())
    except (InvalidSignature, ValueError):
        return "signature does not match the checkpoint's content (checkpoint edited or forged)"
    if cp.count != cp.head_seq:
        return f"count {cp.count} disagrees with head seq {cp.head_seq}"
    return None


@dataclass
class VerifyReport:
    count: int = 0
    head_seq: int = 0
    head_hash: str = ""
    problem: ChainProblem | None = None
    checkpoint_problems: list[str] = field(default_factory=list)
    checked: list[Checkpoint] = field(default_factory=list)
    coverage: list[CoverageProblem] = field(default_factory=list)
    stored_checkpoints: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.checkpoint_problems and not self.coverage


def verify_chain(
    log: AuditLog,
    cps: list[tuple[str, StoredCheckpoint]],
    trusted: Ed25519PublicKey | None,
    *,
    require_signed: bool = False,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> VerifyReport:
    """Stream the whole chain once against every checkpoint: the stored ones and ``cps``
    (named copies from outside the host).  Each signature is checked against ``trusted``;
    every valid checkpoint pins its heads.  ``require_signed`` (a key is configured):
    the checkpoints must cover every record (see core.audit.coverage)."""
    report = VerifyReport()
    pins: dict[int, str] = {}
    stored_ok: list[Checkpoint] = []
    shipped_ok: list[tuple[str, Checkpoint]] = []

    def pin(name: str, cp: Checkpoint) -> bool:
        for seq, digest in ((cp.head_seq, cp.head_hash), (cp.from_seq, cp.from_hash) if cp.n else (0, "")):
            if seq > 0 and pins.get(seq, digest) != digest:
                report.checkpoint_problems.append(f"{name}: disagrees with another checkpoint at seq {seq}")
                return False
        pins[cp.head_seq] = cp.head_hash
        if cp.n and cp.from_seq > 0:
            pins[cp.from_seq] = cp.from_hash
        return True

    for row_id, stored in log.iter_checkpoints():
        report.stored_checkpoints += 1
        name = f"stored checkpoint #{row_id}"
        if stored is None:
            report.checkpoint_problems.append(f"{name}: unreadable (edited)")
            continue
        problem = signature_problem(stored, trusted)
        if problem:
            report.checkpoint_problems.append(f"{name}: {problem}")
            continue
        if pin(name, stored.checkpoint):
            stored_ok.append(stored.checkpoint)
    for name, stored in cps:
        problem = signature_problem(stored, trusted)
        if problem:
            report.checkpoint_problems.append(f"{name}: {problem}")
            continue
        if pin(name, stored.checkpoint):
            shipped_ok.append((name, stored.checkpoint))
    report.checked = [*stored_ok[-1:], *(cp for _, cp in shipped_ok)]
    verifier = ChainVerifier({s: h for s, h in pins.items() if s > 0})
    for row in log.iter_rows():
        if verifier.feed(row.seq, row.content, row.prev_hash, row.hash, row.column_mismatch):
            break
    report.problem = verifier.finish()
    report.count, report.head_seq, report.head_hash = verifier.count, verifier.head_seq, verifier.head_hash
    if require_signed:
        head = max(verifier.head_seq, log.head()[0])  # the whole stored chain, even past a first bad record
        report.coverage = coverage(stored_ok, head, now or datetime.now(UTC), max_age, shipped_ok)
    return report
