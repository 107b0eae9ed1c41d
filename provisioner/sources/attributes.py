"""Directory attribute presets and their mapping to canonical names.

A preset maps canonical names (``username``, ``department`` ...) to directory
attributes; ``attributes = {canonical = "ldapAttr"}`` in the configuration
overrides or extends it.  :func:`map_entry` turns one entry's raw values
(attribute name -> list of bytes) into canonical, decoded tuples of strings.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from provisioner.config import _SourceBase
from provisioner.core.needs import SourceNeeds

RawAttributes = Mapping[str, Sequence[bytes]]
"""Attribute name (lower-cased) -> raw values, as read from LDAP or LDIF."""

CANONICAL = (
    "username",
    "stable_id",
    "email",
    "display_name",
    "department",
    "title",
    "employee_type",
    "employee_id",
    "status",
    "hire_date",
    "leave_date",
    "manager",
    "company",
)

PRESETS: Mapping[str, Mapping[str, str]] = {
    "openldap": {
        "stable_id": "entryUUID",
        "username": "uid",
        "email": "mail",
        "display_name": "cn",
        "department": "departmentNumber",
        "title": "title",
        "employee_type": "employeeType",
        "employee_id": "employeeNumber",
        "manager": "manager",
        "status": "hrStatus",
        "hire_date": "hrHireDate",
        "leave_date": "hrLeaveDate",
    },
    "ad": {
        "stable_id": "objectGUID",
        "username": "sAMAccountName",
        "email": "mail",
        "upn": "userPrincipalName",
        "display_name": "displayName",
        "department": "department",
        "title": "title",
        "employee_type": "employeeType",
        "employee_id": "employeeID",
        "manager": "manager",
        "company": "company",
        "status": "userAccountControl",
        "leave_date": "accountExpires",
    },
}

DATE_NAMES = frozenset({"hire_date", "leave_date"})
UAC_DISABLED = 0x2
AD_NEVER = frozenset({0, 9223372036854775807})
AD_DISABLED_STATUS = "inactive"
"""Status for an AD account with ACCOUNTDISABLE set; one of the default
``lifecycle.terminated_statuses`` so a disabled account never keeps a login."""
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AttributeMap:
    """Canonical name -> directory attribute, for one source."""

    preset: str
    fields: Mapping[str, str]
    plan: tuple[tuple[str, str, str], ...] = ()
    """(canonical, lower-cased attribute, attribute) for every field, computed once."""

    def __post_init__(self) -> None:
        if not self.plan:
            plan = tuple((c, a.lower(), a) for c, a in self.fields.items())
            object.__setattr__(self, "plan", plan)

    def restrict(self, needs: SourceNeeds) -> AttributeMap:
        """Only the fields ``needs`` asks for (stable id and username always)."""
        if needs.attributes is None:
            return self
        keep = needs.attributes | {"stable_id", "username"}
        return AttributeMap(self.preset, {c: a for c, a in self.fields.items() if c in keep})

    @property
    def stable_id(self) -> str:
        return self.fields["stable_id"]

    @property
    def username(self) -> str:
        return self.fields["username"]


@dataclass(slots=True)
class MappedEntry:
    """One entry after mapping; ``problems`` are per-value warnings."""

    dn: str
    attributes: dict[str, tuple[str, ...]]
    enabled: bool = True
    problems: list[str] = field(default_factory=list)


def attribute_map(config: _SourceBase) -> AttributeMap:
    """The preset of ``config`` with its overrides applied."""
    fields = dict(PRESETS[config.preset])
    fields.update({k.lower(): v for k, v in config.attributes.items()})
    if config.stable_id_attribute:
        fields["stable_id"] = config.stable_id_attribute
    if config.username_attribute:
        fields["username"] = config.username_attribute
    return AttributeMap(config.preset, fields)


def requested_attributes(amap: AttributeMap) -> list[str]:
    """The minimal attribute list to request for users (order kept, no duplicates)."""
    wanted = list(amap.fields.values())
    if amap.preset == "ad":
        wanted.append("userAccountControl")
    seen: set[str] = set()
    out: list[str] = []
    for name in wanted:
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


# --------------------------------------------------------------------------- decoding


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.hex()


def decode_guid(raw: bytes) -> str:
    """objectGUID (16 bytes, little-endian fields) -> canonical GUID string."""
    if len(raw) == 16:
        return str(uuid.UUID(bytes_le=raw))
    return str(uuid.UUID(raw.decode("ascii").strip().strip("{}")))


def filetime_to_iso(value: int) -> str | None:
    """AD FILETIME (100 ns ticks since 1601 UTC) -> ISO datetime; None = never."""
    if value in AD_NEVER:
        return None
    if value < 0:
        raise ValueError(f"negative FILETIME {value}")
    try:
        moment = _FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return None  # beyond year 9999: effectively never
    return moment.isoformat()


_GENERALIZED = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:[.,]\d+)?(Z|[+-]\d{4})?$")


def normalize_date(text: str) -> str:
    """``YYYY-MM-DD``, ``YYYYMMDD`` or GeneralizedTime -> ``YYYY-MM-DD``."""
    value = text.strip()
    try:
        if len(value) >= 10 and value[4] == "-":
            return date.fromisoformat(value[:10]).isoformat()
        m = _GENERALIZED.match(value)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        pass
    raise ValueError(f"not a date: {text!r}")


def _uac_disabled(raw: Sequence[bytes]) -> bool:
    return bool(raw) and bool(int(raw[0]) & UAC_DISABLED)


def _decode(canonical: str, attr: str, values: Sequence[bytes]) -> tuple[str, ...]:
    kind = attr.lower()
    if kind == "objectguid":
        return tuple(decode_guid(v) for v in values)
    if kind == "useraccountcontrol" and canonical == "status":
        return (AD_DISABLED_STATUS if _uac_disabled(values) else "active",)
    if kind == "accountexpires":
        out = (filetime_to_iso(int(v)) for v in values)
        return tuple(v for v in out if v is not None)
    texts = tuple(t for t in (decode_text(v) for v in values) if t)
    if canonical in DATE_NAMES:
        return tuple(normalize_date(t) for t in texts)
    return texts


_SPECIAL = frozenset({"objectguid", "useraccountcontrol", "accountexpires"})


def map_entry(dn: str, raw: RawAttributes, amap: AttributeMap) -> MappedEntry:
    """Decode every mapped attribute of one entry (``raw`` keys lower-cased)."""
    entry = MappedEntry(dn=dn, attributes={})
    for canonical, key, attr in amap.plan:
        values = raw.get(key)
        if not values:
            continue
        if key not in _SPECIAL and canonical not in DATE_NAMES:
            try:
                texts = tuple(t for t in (v.decode("utf-8").strip() for v in values) if t)
            except UnicodeDecodeError:
                texts = tuple(t for t in (decode_text(v) for v in values) if t)
            if texts:
                entry.attributes[canonical] = texts
            continue
        try:
            decoded = _decode(canonical, attr, values)
        except ValueError as exc:
            entry.problems.append(f"{dn}: {canonical} ({attr}): {exc}; value ignored")
            continue
        if decoded:
            entry.attributes[canonical] = decoded
    uac = raw.get("useraccountcontrol")
    if uac:
        try:
            entry.enabled = not _uac_disabled(uac)
        except ValueError:
            entry.enabled = False
            entry.problems.append(f"{dn}: userAccountControl is not a number; treated as disabled")
    return entry
