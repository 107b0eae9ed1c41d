"""The one writer of provisioner configuration files for the tests.

Tables are given as Python values and rendered as TOML (strings as JSON strings, which TOML
reads alike; dicts as inline tables; ``None`` values left out).  A source may also be given
as ready TOML text (``[[sources]] ...``), as some fixtures render their own."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Table = Mapping[str, Any]


def toml_value(value: Any) -> str:
    """A TOML value: inline tables for dicts (``None`` and empty lists left out), arrays, scalars."""
    if isinstance(value, Mapping):
        items = [f"{k} = {toml_value(v)}" for k, v in value.items() if v is not None and v != []]
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def table(header: str, values: Table) -> str:
    """``[header]`` (or ``[[header]]``) with one ``key = value`` line per value that is not None."""
    lines = [header, *(f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None)]
    return "\n".join(lines)


def write_config(
    path: Path,
    *,
    sources: Sequence[Table | str],
    targets: Sequence[Table],
    state_url: str | None = None,
    mappings: str = "mappings",
    instance: str | None = None,
    log_level: str | None = "warning",
    naming: Table | None = None,
    extra: str = "",
) -> Path:
    """Write a provisioner configuration to ``path`` and return ``path``.  ``extra``: more
    TOML appended as written (``[safety]``, ``[alerts]`` ...)."""
    general = {"mappings": mappings, "instance": instance, "log_format": "json", "log_level": log_level}
    parts = [table("[provisioner]", general)]
    if naming:
        parts.append(table("[naming]", naming))
    if state_url is not None:
        parts.append(table("[state]", {"url": state_url}))
    parts += [s if isinstance(s, str) else table("[[sources]]", s) for s in sources]
    parts += [table("[[targets]]", t) for t in targets]
    path.write_text("\n\n".join(parts) + "\n\n" + extra + "\n")
    return path


def pin_instance(path: Path, instance: str) -> None:
    """Set ``[provisioner] instance`` in a written configuration (replacing any value)."""
    lines = path.read_text().splitlines()
    start = lines.index("[provisioner]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    section = [line for line in lines[start:end] if not line.startswith("instance = ")]
    lines[start:end] = [f"instance = {json.dumps(instance)}", *section]
    path.write_text("\n".join(lines) + "\n")
