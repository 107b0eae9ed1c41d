"""The process's audit signing key, as the audit store uses it (Ed25519)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from provisioner.core.governance.audit import Checkpoint, key_id


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Signer:
    """Signs checkpoints; checks that a checkpoint was signed by this key."""

    __slots__ = ("_key", "key_id", "public", "public_hex")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        raw = raw_public(self.public)
        self.public_hex = raw.hex()
        self.key_id = key_id(raw)

    def sign(self, cp: Checkpoint) -> str:
        return self._key.sign(cp.message()).hex()

    def vouches_for(self, cp: Checkpoint, signature: str) -> bool:
        if cp.key_id != self.key_id:
            return False
        try:
            self.public.verify(bytes.fromhex(signature), cp.message())
        except (InvalidSignature, ValueError):
            return False
        return True
