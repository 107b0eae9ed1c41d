"""Graph user and group objects -> compact records -> identities.

Records are what the delta sync keeps in the state store: one small dict per
user (only the selected properties that have a value, the manager's id and
UPN) and, per group, its display name and direct member ids.  Full reads and
delta reads produce the same records, so both yield the same snapshot.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.config import EntraSourceConfig
from provisioner.core.values.model import Identity
from provisioner.sources.attributes import Transform, apply_transform, normalize_date

Record = dict[str, Any]
Membership = tuple[dict[str, set[str]], list[str], dict[str, tuple[str, ...]], int]
"""user id -> group labels; referenced names no group has; ambiguous names -> their groups; groups matched."""

BASE_PROPERTIES = (
    "id",
    "userPrincipalName",
    "accountEnabled",
    "mailNickname",
    "onPremisesSamAccountName",
    "mail",
    "displayName",
    "employeeId",
    "employeeType",
    "department",
    "jobTitle",
    "companyName",
    "employeeHireDate",
    "employeeLeaveDateTime",
)
CANONICAL = {
    "mail": "email",
    "displayName": "display_name",
    "employeeId": "employee_id",
    "employeeType": "employee_type",
    "department": "department",
    "jobTitle": "title",
    "companyName": "company",
    "userPrincipalName": "upn",
}
EXTENSIONS = "onPremisesExtensionAttributes"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text))


def user_properties(cfg: EntraSourceConfig) -> list[str]:
    """The ``$select`` list: what the mapping needs and nothing more."""
    props = list(BASE_PROPERTIES)
    if cfg.extension_attributes:
        props.append(EXTENSIONS)
    for value in cfg.attributes.values():
        prop = value if isinstance(value, str) else value.attribute
        if prop not in props:
            props.append(prop)
    return props


def _set_manager(record: Record, raw: Mapping[str, Any]) -> None:
    if "manager" in raw:  # $expand=manager($select=id,userPrincipalName) on /users
        mgr = raw["manager"]
        record.pop("_mgr", None)
        record.pop("_mgrUpn", None)
        if isinstance(mgr, dict) and mgr.get("id"):
            record["_mgr"] = str(mgr["id"])
            if mgr.get("userPrincipalName"):
                record["_mgrUpn"] = str(mgr["userPrincipalName"])
    if "manager@delta" in raw:  # users/delta with $select=...,manager: object ids only
        for item in raw["manager@delta"] or ():
            if not isinstance(item, dict) or not item.get("id"):
                continue
            if "@removed" in item:
                if record.get("_mgr") == item["id"]:
                    record.pop("_mgr", None)
                    record.pop("_mgrUpn", None)
            else:
                if record.get("_mgr") != item["id"]:
                    record.pop("_mgrUpn", None)
                record["_mgr"] = str(item["id"])


def merge_user(old: Record | None, raw: Mapping[str, Any], props: Iterable[str]) -> Record:
    """Apply one Graph user object (full, or a delta with only some properties) to a record."""
    record: Record = dict(old or {})
    for prop in props:
        if prop in raw:
            value = raw[prop]
            if value is None or value == "" or value == []:
                record.pop(prop, None)
            elif prop == EXTENSIONS and isinstance(value, dict):
                kept = {k: v for k, v in value.items() if v not in (None, "")}
                if kept:
                    record[prop] = kept
                else:
                    record.pop(prop, None)
            else:
                record[prop] = value
    _set_manager(record, raw)
    return record


# --------------------------------------------------------------------------- groups


def merge_group(old: Record | None, raw: Mapping[str, Any]) -> Record:
    """Apply one groups/delta object (``displayName``, ``members@delta``)."""
    record: Record = {"n": (old or {}).get("n", ""), "m": set((old or {}).get("m", ()))}
    if raw.get("displayName") is not None:
        record["n"] = str(raw["displayName"])
    for item in raw.get("members@delta") or ():
        if isinstance(item, dict) and item.get("id"):
            if "@removed" in item:
                record["m"].discard(str(item["id"]))
            else:
                record["m"].add(str(item["id"]))
    return record


def described(groups: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """``displayName (object id)`` of each group, for the message of an ambiguous name."""
    return tuple(sorted(f"{g.get('displayName') or g.get('n') or ''} ({g['id']})" for g in groups))


def closure(groups: Mapping[str, Record], wanted: Iterable[str]) -> Membership:
    """user id -> labels (lower-cased name and id) of every wanted group it is in,
    nested membership included; also the wanted names no group has, the names several
    groups carry (they match no one: display names are not unique in Entra ID), and how
    many groups matched."""
    by_label: dict[str, list[str]] = {}
    for gid, rec in groups.items():
        by_label.setdefault(gid.lower(), []).append(gid)
        if rec.get("n"):
            by_label.setdefault(str(rec["n"]).lower(), []).append(gid)
    out: dict[str, set[str]] = {}
    missing: list[str] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    matched: set[str] = set()
    for name in sorted(wanted):
        roots = by_label.get(name, [])
        if not roots:
            missing.append(name)
        if len(roots) > 1 and not is_guid(name):
            ambiguous[name] = described({"id": r, "n": groups[r].get("n")} for r in roots)
            matched.update(roots)
            continue
        for root in roots:
            matched.add(root)
            labels = {root.lower(), str(groups[root].get("n", "")).lower()} - {""}
            seen = {root}
            queue = deque([root])
            while queue:
                for member in groups[queue.popleft()].get("m", ()):
                    if member in groups:
                        if member not in seen:
                            seen.add(member)
                            queue.append(member)
                    else:
                        out.setdefault(member, set()).update(labels)
    return out, missing, ambiguous, len(matched)


# --------------------------------------------------------------------------- identities


def _username(cfg: EntraSourceConfig, record: Record) -> str | None:
    upn = record.get("userPrincipalName")
    if cfg.username_from == "upn_local":
        return str(upn).split("@", 1)[0] if upn else None
    if cfg.username_from == "upn":
        return str(upn) if upn else None
    value = record.get(cfg.username_from)
    return str(value) if value else None


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if v not in (None, ""))
    return (str(value).strip(),) if value not in (None, "") else ()


def to_identity(
    cfg: EntraSourceConfig,
    record: Record,
    upn_of: Mapping[str, str],
    groups: Mapping[str, set[str]],
    notes: list[str],
) -> Identity | None:
    uid = str(record.get("id") or "")
    username = _username(cfg, record)
    if not uid or not username:
        return None
    where = f"{record.get('userPrincipalName') or uid}"
    attrs: dict[str, tuple[str, ...]] = {"stable_id": (uid,), "username": (username,)}
    for prop, canonical in CANONICAL.items():
        if record.get(prop) not in (None, ""):
            attrs[canonical] = _texts(record[prop])
    for prop, canonical in (("employeeHireDate", "hire_date"), ("employeeLeaveDateTime", "leave_date")):
        if record.get(prop):
            text = str(record[prop]).strip()
            try:
                attrs[canonical] = (normalize_date(text),)
            except ValueError:
                attrs[canonical] = (text,)  # kept as written: the core fails safe and reports it
                notes.append(f"{where}: {canonical} ({prop}) = {text!r} is not a date; treated as a leaver")
    ext = record.get(EXTENSIONS) or {}
    for key, canonical in cfg.extension_attributes.items():
        if ext.get(key) not in (None, ""):
            attrs[canonical.lower()] = _texts(ext[key])
    for canonical, value in cfg.attributes.items():
        prop, transform = (value, None) if isinstance(value, str) else (value.attribute, Transform.of(value))
        if record.get(prop) not in (None, ""):
            texts = apply_transform(canonical.lower(), _texts(record[prop]), transform)
            if texts:
                attrs[canonical.lower()] = texts
    mgr = record.get("_mgr")
    if mgr:
        attrs["manager_id"] = (str(mgr),)
        upn = upn_of.get(str(mgr)) or record.get("_mgrUpn")
        if upn:
            attrs["manager"] = (str(upn),)
    return Identity(
        stable_id=uid,
        username=username,
        source=cfg.name,
        attributes=attrs,
        groups=frozenset(groups.get(uid, ())),
        enabled=record.get("accountEnabled") is not False,
        dn=str(record.get("userPrincipalName") or ""),
    )


def identities(
    cfg: EntraSourceConfig, users: Mapping[str, Record], groups: Mapping[str, set[str]], notes: list[str]
) -> list[Identity]:
    """Every user record mapped, sorted by stable id; records without a username are
    counted in ``notes``."""
    upn_of = {uid: str(r["userPrincipalName"]) for uid, r in users.items() if r.get("userPrincipalName")}
    out: list[Identity] = []
    skipped: list[str] = []
    for uid in sorted(users):
        ident = to_identity(cfg, users[uid], upn_of, groups, notes)
        if ident is None:
            skipped.append(uid)
        else:
            out.append(ident)
    if skipped:
        notes.append(
            f"{len(skipped)} user(s) skipped without {cfg.username_from} (first: id {skipped[0]})"
        )
    return out
