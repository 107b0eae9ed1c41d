"""What a mapping file's value is, in TOML's words, for validation messages.  Pure.

A key that is there with the wrong type is named with that type (``'owner' must be a string,
not an integer 3``), never called missing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "the text"),
    (list, "an array"),
    (dict, "a table"),
    (datetime, "a date-time"),
    (date, "a date"),
    (time, "a time"),
)


def toml_type(value: Any) -> str:
    """``an integer 3``, ``the text 'tomorrow'``, ``an array ['x']``."""
    name = next((n for t, n in _NAMES if isinstance(value, t)), type(value).__name__)
    return f"{name} {value!r}"


def text_problem(raw: Mapping[str, Any], key: str, why: str = "", what: str = "a string") -> str | None:
    """Why ``raw[key]`` is no usable text (missing, another type, blank), or None."""
    if key not in raw:
        return f"'{key}' is required{why}"
    value = raw[key]
    if not isinstance(value, str):
        return f"'{key}' must be {what}, not {toml_type(value)}"
    if not value.strip():
        return f"'{key}' must not be empty{why}"
    return None


def id_problem(raw: Mapping[str, Any]) -> str:
    """Why ``raw["id"]`` is no usable id (letters, digits, '_', '.', '-')."""
    rule = "letters, digits, '_', '.', '-'"
    if "id" not in raw:
        return f"'id' is required: {rule}"
    if not isinstance(raw["id"], str):
        return f"'id' must be a string ({rule}), not {toml_type(raw['id'])}"
    return f"'id' {raw['id']!r} may hold only {rule}"
