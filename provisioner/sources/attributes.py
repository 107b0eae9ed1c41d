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
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from provisioner.config import AttributeTransform
from provisioner.core.identity.needs import SourceNeeds
from provisioner.source_config import _SourceBase

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
class Transform:
    """``[sources.attributes]`` table form: the part of each value ``pattern``'s one
    capture group matches (values it does not match are skipped), and for a hire or
    leave date the strptime ``formats`` tried in order."""

    pattern: re.Pattern[str] | None = None
    formats: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: AttributeTransform) -> Transform:
        return cls(re.compile(config.pattern) if config.pattern is not None else None, config.all_formats)


_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%p", "%z", "%Z", "%c", "%X")


def apply_transform(canonical: str, texts: Sequence[str], transform: Transform | None) -> tuple[str, ...]:
    """Each value through ``transform``; for a hire or leave date normalised to ISO 8601.

    A date that cannot be read is kept as written: the core treats the identity as a
    leaver and reports it (see docs/rules.md), so a bad value is never silently dropped.
    Raises nothing."""
    out: list[str] = []
    for text in texts:
        if transform is not None and transform.pattern is not None:
            m = transform.pattern.search(text)
            if m is None or m.group(1) is None:
                continue
            text = m.group(1).strip()
        if not text:
            continue
        if canonical in DATE_NAMES:
            text = _date_text(text, transform.formats if transform is not None else ())
        out.append(text)
    return tuple(out)


def _date_text(text: str, formats: Sequence[str]) -> str:
    for fmt in formats:
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if any(d in fmt for d in _TIME_DIRECTIVES):
            return moment.isoformat()
        return moment.date().isoformat()
    try:
        return normalize_date(text)
    except ValueError:
        return text


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

    transforms: Mapping[str, Transform] = field(default_factory=dict)
    """Canonical name -> its transform (the table form of ``[sources.attributes]``)."""

    def restrict(self, needs: SourceNeeds) -> AttributeMap:
        """Only the fields ``needs`` asks for (stable id and username always)."""
        if needs.attributes is None:
            return self
        keep = needs.attributes | {"stable_id", "username"}
        fields = {c: a for c, a in self.fields.items() if c in keep}
        return AttributeMap(self.preset, fields, transforms={c: t for c, t in self.transforms.items() if c in keep})

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
    transforms: dict[str, Transform] = {}
    for key, value in config.attributes.items():
        if isinstance(value, AttributeTransform):
            fields[key.lower()] = value.attribute
            transforms[key.lower()] = Transform.of(value)
        else:
            fields[key.lower()] = value
    if config.stable_id_attribute:
        fields["stable_id"] = config.stable_id_attribute
    if config.username_attribute:
        fields["username"] = config.username_attribute
    return AttributeMap(config.preset, fields, transforms={c: t for c, t in transforms.items() if fields.get(c)})


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
    """``YYYY-MM-DD``, ``YYYYMMDD``, an ISO 8601 timestamp or GeneralizedTime -> ISO 8601:
    a date stays a date, a timestamp keeps its time of day and its offset (``Z`` ->
    ``+00:00``); one without an offset is read in ``[lifecycle] timezone`` later."""
    value = text.strip()
    try:
        if len(value) == 10 and value[4] == "-":
            return date.fromisoformat(value).isoformat()
        if len(value) > 10 and value[4] == "-" and value[10] in "Tt ":
            return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
        m = _GENERALIZED.match(value)
        if m:
            if m[4] is None:
                return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
            moment = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5] or 0), int(m[6] or 0))
            if m[7] == "Z":
                moment = moment.replace(tzinfo=UTC)
            elif m[7]:
                sign = 1 if m[7][0] == "+" else -1
                offset = timedelta(hours=int(m[7][1:3]), minutes=int(m[7][3:5]))
                moment = moment.replace(tzinfo=timezone(sign * offset))
            return moment.isoformat()
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
    return tuple(t for t in (decode_text(v) for v in values) if t)


_SPECIAL = frozenset({"objectguid", "useraccountcontrol", "accountexpires"})


def map_entry(dn: str, raw: RawAttributes, amap: AttributeMap, shared: dict[Any, Any] | None = None) -> MappedEntry:
    """Decode every mapped attribute of one entry (``raw`` keys lower-cased).  ``shared``: a
    table the caller keeps while it reads many entries: equal values (a department, a status)
    become one object (a warm daemon keeps every person's attributes between runs)."""
    entry = MappedEntry(dn=dn, attributes={})
    transforms = amap.transforms
    for canonical, key, attr in amap.plan:
        values = raw.get(key)
        if not values:
            continue
        if key not in _SPECIAL and canonical not in DATE_NAMES and canonical not in transforms:
            try:
                texts = tuple(t for t in (v.decode("utf-8").strip() for v in values) if t)
            except UnicodeDecodeError:
                texts = tuple(t for t in (decode_text(v) for v in values) if t)
            if texts:
                entry.attributes[canonical] = texts if shared is None else shared.setdefault(texts, texts)
            continue
        try:
            decoded = _decode(canonical, attr, values)
        except ValueError as exc:
            if canonical not in DATE_NAMES:
                entry.problems.append(f"{dn}: {canonical} ({attr}): {exc}; value ignored")
                continue
            decoded = tuple(t for t in (decode_text(v) for v in values) if t)  # kept raw: fails safe in the core
        if key not in _SPECIAL or canonical in transforms:
            decoded = apply_transform(canonical, decoded, transforms.get(canonical))
        for text in decoded if canonical in DATE_NAMES else ():
            try:
                normalize_date(text)
            except ValueError:
                entry.problems.append(
                    f"{dn}: {canonical} ({attr}) = {text!r} is not a date; the person is treated as a leaver"
                )
        if decoded:
            entry.attributes[canonical] = decoded if shared is None else shared.setdefault(decoded, decoded)
    uac = raw.get("useraccountcontrol")
    if uac:
        try:
            entry.enabled = not _uac_disabled(uac)
        except ValueError:
            entry.enabled = False
            entry.problems.append(f"{dn}: userAccountControl is not a number; treated as disabled")
    return entry
