"""LDIF file source: a directory on disk, so a laptop needs no LDAP server.

The reader handles the content-record subset of RFC 2849 a directory export
uses: comments, folded lines, ``attr:: base64`` values and blank-line separated
records starting with ``dn:``.  Malformed input raises :class:`ConfigError`
naming the file and line.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.config import LdifSourceConfig
from provisioner.core.values.model import SourceSnapshot
from provisioner.errors import ConfigError
from provisioner.sources.attributes import attribute_map
from provisioner.sources.groups import GroupRecord, build_snapshot, group_record


@dataclass(slots=True)
class LdifRecord:
    dn: str
    line: int
    attributes: dict[str, list[bytes]] = field(default_factory=dict)
    """Lower-cased attribute name -> raw values."""

    def has_class(self, name: str) -> bool:
        wanted = name.lower().encode()
        return any(v.strip().lower() == wanted for v in self.attributes.get("objectclass", ()))


def _logical_lines(text: str, path: str) -> Iterator[tuple[int, str]]:
    """Unfold continuation lines and drop comments; yields (line number, line)."""
    current: str | None = None
    start = 0
    in_comment = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(" "):
            if in_comment:
                continue
            if current is None:
                raise ConfigError(f"{path}:{number}: continuation line outside a record")
            current += line[1:]
            continue
        if current is not None:
            yield start, current
            current = None
        in_comment = line.startswith("#")
        if in_comment:
            continue
        if not line.strip():
            yield number, ""
            continue
        current, start = line, number
    if current is not None:
        yield start, current


def _value(line: str, number: int, path: str) -> tuple[str, bytes]:
    name, sep, rest = line.partition(":")
    if not sep or not name.strip() or " " in name.strip():
        raise ConfigError(f"{path}:{number}: expected 'attribute: value', got {line[:60]!r}")
    if rest.startswith(":"):
        try:
            return name, base64.b64decode(rest[1:].strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"{path}:{number}: {name}: invalid base64 value") from exc
    if rest.startswith("<"):
        raise ConfigError(f"{path}:{number}: {name}: URL values (':<') are not supported")
    return name, rest.lstrip(" ").encode("utf-8")


def parse_ldif(text: str, path: str = "<ldif>") -> list[LdifRecord]:
    """Parse LDIF content records; raise ConfigError naming ``path`` and the line."""
    records: list[LdifRecord] = []
    record: LdifRecord | None = None
    for number, line in _logical_lines(text, path):
        if not line:
            record = None
            continue
        name, value = _value(line, number, path)
        key = name.strip().lower()
        if record is None:
            if key == "version" and not records:
                continue
            if key != "dn":
                raise ConfigError(f"{path}:{number}: a record must start with 'dn:', got {name!r}")
            record = LdifRecord(dn=value.decode("utf-8", "replace").strip(), line=number)
            records.append(record)
            continue
        if key == "changetype" and value.strip().lower() != b"add":
            raise ConfigError(f"{path}:{number}: only content records are supported")
        if key in ("dn", "changetype"):
            if key == "dn":
                raise ConfigError(f"{path}:{number}: second 'dn:' in one record (missing blank line?)")
            continue
        record.attributes.setdefault(key, []).append(value)
    return records


class LdifSource:
    """Identities and groups from one LDIF file."""

    def __init__(self, config: LdifSourceConfig, base_dir: Path | None = None) -> None:
        self.config = config
        self.name = config.name
        path = Path(config.path)
        self.path = path if path.is_absolute() or base_dir is None else base_dir / path
        self.amap = attribute_map(config)

    def _load(self) -> list[LdifRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"source {self.name}: cannot read LDIF {self.path}: {exc}") from exc
        return parse_ldif(text, str(self.path))

    def read(self) -> SourceSnapshot:
        records = self._load()
        users = [r for r in records if r.has_class(self.config.user_filter_class)]
        groups: list[GroupRecord] = [
            group_record(r.dn, r.attributes)
            for r in records
            if r.has_class(self.config.group_filter_class)
        ]
        stable = self.amap.stable_id.lower()
        for r in users:
            if not r.attributes.get(stable):
                raise ConfigError(
                    f"{self.path}:{r.line}: entry {r.dn} has no {self.amap.stable_id} "
                    "(LDIF has no server-assigned id; add one to every person)"
                )
        return build_snapshot(self.name, [(r.dn, r.attributes) for r in users], groups, self.amap)

    def close(self) -> None:
        """Nothing to release."""
