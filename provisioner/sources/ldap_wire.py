"""ldap3 details for :mod:`provisioner.sources.ldap`: raw entry decoding, paging
cookies, result checks and AD range retrieval of multi-valued attributes."""

from __future__ import annotations

import re
from typing import Any, Protocol

import ldap3

from provisioner.errors import SourceIncomplete

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
_RANGE = re.compile(r"^(?P<attr>[^;]+);range=(?P<lo>\d+)-(?P<hi>\d+|\*)$", re.IGNORECASE)

Entry = tuple[str, dict[str, list[bytes]]]


class RangeReader(Protocol):
    """The one search range retrieval needs (:class:`provisioner.sources.ldap.LdapSource` has it)."""

    def fetch_range(self, conn: ldap3.Connection, dn: str, spec: str) -> list[dict[str, Any]]: ...


class KeyValueStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


def decode_entries_raw(conn: ldap3.Connection) -> None:
    """Decode search result entries straight from the BER tree ldap3 has parsed:
    DN as text, attribute names lower-cased, values as bytes, nothing else.

    ldap3 would also build a second, schema-formatted copy of every value and a
    case-insensitive dict per entry; for a full directory read that costs more
    than the network.  Only this connection's strategy is changed.
    """
    strategy = conn.strategy
    generic = strategy.decode_response_fast

    def decode(message: dict[str, Any]) -> dict[str, Any]:
        if message["protocolOp"] != 4:  # not a searchResEntry
            return generic(message)  # type: ignore[no-any-return]
        payload = message["payload"]
        raw: dict[str, list[bytes]] = {}
        for attribute in payload[1][3]:
            name_node, values_node = attribute[3]
            name = bytes(name_node[3]).decode("utf-8", "replace").lower()
            values = [bytes(v[3]) for v in values_node[3]]
            if name in raw:
                raw[name].extend(values)
            else:
                raw[name] = values
        dn = bytes(payload[0][3]).decode("utf-8", "replace")
        return {"type": "searchResEntry", "dn": dn, "raw_attributes": raw, "attributes": {}}

    strategy.decode_response_fast = decode


def search_failure(result: dict[str, Any] | None) -> str | None:
    """None when ``result`` is a success, else what went wrong."""
    if result and result.get("result") == 0:
        return None
    what = str((result or {}).get("description", "no result"))
    message = (result or {}).get("message", "")
    return what + (f" ({message})" if message else "")


def cookie_of(result: dict[str, Any] | None) -> bytes | None:
    controls = (result or {}).get("controls") or {}
    value = controls.get(PAGED_RESULTS_OID, {}).get("value") or {}
    cookie = value.get("cookie")
    return cookie if isinstance(cookie, bytes) and cookie else None


def ranged_values(response: list[dict[str, Any]], attr: str) -> tuple[list[bytes], int, str] | None:
    for item in response:
        for key, values in (item.get("raw_attributes") or {}).items():
            m = _RANGE.match(key)
            if m and m["attr"].lower() == attr.lower():
                return list(values), int(m["lo"]), m["hi"]
    return None


def complete_ranges(
    source: RangeReader, conn: ldap3.Connection, dn: str, raw: dict[str, list[bytes]], step: int | None
) -> dict[str, list[bytes]]:
    """Fetch the rest of AD ranged attributes (``member;range=0-1499``).

    Every range must start where the last ended and hold as many values as it
    claims; anything else (an error, a short or missing range) means the member
    list cannot be read completely: :class:`SourceIncomplete`, never a short group.
    """
    for key in [k for k in raw if ";range=" in k]:
        values = raw.pop(key)
        m = _RANGE.match(key)
        if m is None:
            raise SourceIncomplete(f"{dn}: unexpected ranged attribute {key}")
        attr, lo, hi = m["attr"], int(m["lo"]), m["hi"]
        _check_count(dn, key, lo, hi, len(values))
        while hi != "*":
            start = int(hi) + 1
            spec = f"{attr};range={start}-{start + step - 1 if step else '*'}"
            got = ranged_values(source.fetch_range(conn, dn, spec), attr)
            if got is None:
                raise SourceIncomplete(f"{dn}: {spec} returned no values; the member list is incomplete")
            more, lo, hi = got
            if lo != start:
                raise SourceIncomplete(f"{dn}: asked for {spec}, got a range starting at {lo}")
            _check_count(dn, spec, lo, hi, len(more))
            values.extend(more)
        raw.setdefault(attr.lower(), []).extend(values)
    return raw


def _check_count(dn: str, what: str, lo: int, hi: str, count: int) -> None:
    if hi != "*" and count != int(hi) - lo + 1:
        raise SourceIncomplete(
            f"{dn}: {what} claims {int(hi) - lo + 1} values but returned {count}; the member list is incomplete"
        )
