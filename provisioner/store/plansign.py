"""Signed saved plans: ``plan --out`` signs the plan file with the audit key when
``[audit] signing_key`` is configured, and ``apply --plan`` then accepts only a file
whose signature that key verifies -- an edit is named as an edit (the plain
``plan_digest`` can be recomputed by anyone).

The signature covers the canonical JSON of the whole plan (``plan_digest`` included)
and is stored beside it as ``"signature": {"key_id": ..., "value": <hex>}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.core.governance.audit import key_id

SIGNATURE = "signature"


def _message(data: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in data.items() if k != SIGNATURE}
    return b"provisioner-plan-v1\n" + json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(data: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``data`` (a plan's JSON) with its signature."""
    return {**data, SIGNATURE: {"key_id": key_id(_raw_public(key)), "value": key.sign(_message(data)).hex()}}


def problem(data: Mapping[str, Any], key: Ed25519PrivateKey) -> str | None:
    """Why the plan file's signature is not this key's signature over its content, or None."""
    sig = data.get(SIGNATURE)
    if not isinstance(sig, Mapping):
        return "it is not signed (plans are signed with [audit] signing_key; make it with `provisioner plan --out`)"
    want = key_id(_raw_public(key))
    if sig.get("key_id") != want:
        return f"it is signed by key {sig.get('key_id')!r}, not by this installation's audit key {want}"
    try:
        key.public_key().verify(bytes.fromhex(str(sig.get("value", ""))), _message(data))
    except (InvalidSignature, ValueError):
        return "its signature does not match its content: the file was edited after it was signed"
    return None
