"""Every log line's keys that name a secret are redacted, whatever their case or affixes;
other keys are left as they are."""

from __future__ import annotations

from typing import Any

from provisioner.logs import _redact


def test_secret_keys_are_redacted_in_any_case_and_with_affixes() -> None:
    event: dict[str, Any] = {
        "password": "p1",
        "db_Password": "p2",
        "client_secret": "s1",
        "SECRET": "s2",
        "access_token": "t1",
        "Token": "t2",
        "private_key": "k1",
        "PRIVATE_KEY_PATH": "k2",
        "event": "change_applied",
        "change": "grant trade_reader to ann",
        "reasons": ["rule desk-traders: department='Trading'"],
        "target": "pg",
        "private": "not a key",
    }
    out = _redact(None, "info", dict(event))
    for key in ("password", "db_Password", "client_secret", "SECRET", "access_token", "Token", "private_key",
                "PRIVATE_KEY_PATH"):
        assert out[key] == "[redacted]", key
    for key in ("event", "change", "reasons", "target", "private"):
        assert out[key] == event[key], key
