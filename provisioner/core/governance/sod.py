"""Segregation of duties: policies and exceptions.  Pure: text in, values out.

Policies live in ``mappings/sod/*.toml``::

    [[policy]]
    id = "trade-approve-execute"
    description = "Nobody approves the trades they can execute."
    severity = "critical"
    conflicts = [ { role = "trade_approver" }, { role = "trade_executor" } ]

A side is a business role (``{ role = "..." }``) or a table privilege
(``{ privilege = "INSERT", on = "trading.orders" }``).  Holding any two sides
of one policy is a conflict.  Exceptions (mitigating controls) live in
``mappings/exceptions/*.toml`` as ``[[exception]]`` tables for one identity and
one policy, with an approver, a reason and an expiry date.  Evaluation is in
:mod:`provisioner.core.governance.sodeval`; see ``docs/sod.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from provisioner.core.values.tomltypes import id_problem, text_problem, toml_type

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ON = re.compile(r"^([^.\s]+)\.([^.\s]+)$")
POLICY_KEYS = {
    "id", "description", "severity", "conflicts", "enabled", "on_expiry", "warn_before_expiry_days",
    "max_exception_days",
}
ON_EXPIRY = ("report", "revoke")
SIDE_KEYS = {"role", "privilege", "on"}
EXCEPTION_KEYS = {"identity", "policy", "approver", "reason", "expires", "ticket", "approved"}
SEVERITIES = ("low", "medium", "high", "critical")
TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})


@dataclass(frozen=True, slots=True, order=True)
class Side:
    """One side of a conflict: a role, or a privilege on a table."""

    role: str = ""
    privilege: str = ""
    schema: str = ""
    table: str = ""

    @property
    def is_role(self) -> bool:
        return bool(self.role)

    def describe(self) -> str:
        return f"role {self.role}" if self.role else f"{self.privilege} on {self.schema}.{self.table}"


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    description: str
    severity: str
    sides: tuple[Side, ...]
    file: str
    line: int
    enabled: bool = True
    on_expiry: str = "report"
    """When an exception expires while the conflict is present: ``report`` (an
    error notice and alert every run) or ``revoke`` (the access beyond the
    policy's first side is revoked)."""
    warn_days: int = 14
    """Warn (notice + alert) this many days before an exception expires."""
    max_exception_days: int | None = None
    """Longest an exception may run, from its ``approved`` date (then required)."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class SodException:
    """A documented, approved, expiring exception for one identity and one policy."""

    identity: str
    """username or stable id (compared case-insensitively)."""
    policy: str
    approver: str
    reason: str
    expires: date
    file: str
    line: int
    ticket: str = ""
    approved: date | None = None

    def applies_to(self, username: str, stable_id: str) -> bool:
        return self.identity.casefold() in (username.casefold(), stable_id.casefold())

    def active(self, now: datetime) -> bool:
        """Valid through the expiry date (inclusive, in ``now``'s time zone)."""
        return now.date() <= self.expires

    def describe(self) -> str:
        ticket = f", ticket {self.ticket}" if self.ticket else ""
        return (
            f"exception for {self.identity} approved by {self.approver} until {self.expires.isoformat()}"
            f"{ticket}: {self.reason} ({self.file}:{self.line})"
        )

    def to_json(self) -> dict[str, str]:
        return {
            "identity": self.identity,
            "policy": self.policy,
            "approver": self.approver,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
            "ticket": self.ticket,
            "where": f"{self.file}:{self.line}",
        }


# --------------------------------------------------------------------------- parsing


def _headers(text: str, table: str) -> list[int]:
    pattern = re.compile(rf"^\s*\[\[\s*{table}\s*\]\]\s*(#.*)?$")
    return [i for i, line in enumerate(text.splitlines(), 1) if pattern.match(line)]


def _load(text: str, filename: str, table: str) -> tuple[list[tuple[int, Any]], list[str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{filename}: not valid TOML: {exc}"]
    problems = []
    unknown = set(data) - {table}
    if unknown:
        problems.append(f"{filename}: unknown top-level key(s) {sorted(unknown)}; expected [[{table}]] tables")
    raw = data.get(table, [])
    if not isinstance(raw, list):
        return [], [*problems, f"{filename}: '{table}' must be an array of tables ([[{table}]])"]
    lines = _headers(text, table)
    return [(lines[i] if i < len(lines) else 1, item) for i, item in enumerate(raw)], problems


def _text(raw: Mapping[str, Any], key: str, where: str, problems: list[str], why: str = "") -> str:
    wrong = text_problem(raw, key, why)
    if wrong:
        problems.append(f"{where}: {wrong}")
        return ""
    return str(raw[key]).strip()


def parse_side(raw: Any, where: str) -> tuple[Side | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"{where}: must be a table like {{ role = \"...\" }} or {{ privilege = \"...\", on = \"...\" }}"]
    unknown = set(raw) - SIDE_KEYS
    if unknown:
        return None, [f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SIDE_KEYS)}"]
    if "role" in raw:
        if set(raw) != {"role"}:
            return None, [f"{where}: a role side takes only 'role' (no 'privilege' / 'on')"]
        role = raw["role"]
        if not isinstance(role, str) or not role.strip():
            return None, [f"{where}: 'role' must be a role name"]
        return Side(role=role.strip()), []
    priv, on = raw.get("privilege"), raw.get("on")
    if not isinstance(priv, str) or priv.strip().upper() not in TABLE_PRIVILEGES:
        return None, [f"{where}: 'privilege' must be one of {', '.join(sorted(TABLE_PRIVILEGES))} (got {priv!r})"]
    match = _ON.match(on.strip()) if isinstance(on, str) else None
    if match is None:
        return None, [f"{where}: 'on' must name a table as \"schema.table\" (got {on!r})"]
    return Side(privilege=priv.strip().upper(), schema=match.group(1), table=match.group(2)), []


def _parse_policy(raw: Any, filename: str, line: int) -> tuple[Policy | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"{filename}:{line}: [[policy]] must be a table"]
    pid = raw.get("id")
    where = f"{filename}:{line}: policy {pid!r}" if isinstance(pid, str) else f"{filename}:{line}: policy"
    problems: list[str] = []
    unknown = set(raw) - POLICY_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(POLICY_KEYS)}")
    if not isinstance(pid, str) or not _ID.match(pid):
        problems.append(f"{where}: {id_problem(raw)}")
    desc = _text(raw, "description", where, problems, " and must say what the policy prevents")
    severity = raw.get("severity", "high")
    if severity not in SEVERITIES:
        problems.append(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: 'enabled' must be true or false")
    conflicts = raw.get("conflicts")
    sides: list[Side] = []
    if not isinstance(conflicts, list) or len(conflicts) < 2:
        problems.append(f"{where}: 'conflicts' must list at least two sides")
    else:
        for i, item in enumerate(conflicts):
            side, probs = parse_side(item, f"{where}: conflicts[{i}]")
            problems += probs
            if side is not None:
                if side in sides:
                    problems.append(f"{where}: conflicts[{i}]: {side.describe()} is listed twice")
                sides.append(side)
    on_expiry = raw.get("on_expiry", "report")
    if on_expiry not in ON_EXPIRY:
        problems.append(f"{where}: on_expiry {on_expiry!r} is not one of {', '.join(ON_EXPIRY)}")
    warn = raw.get("warn_before_expiry_days", 14)
    if not isinstance(warn, int) or isinstance(warn, bool) or warn < 0:
        problems.append(f"{where}: 'warn_before_expiry_days' must be a whole number of days >= 0")
    longest = raw.get("max_exception_days")
    if longest is not None and (not isinstance(longest, int) or isinstance(longest, bool) or longest < 1):
        problems.append(f"{where}: 'max_exception_days' must be a whole number of days >= 1")
    if problems:
        return None, problems
    return Policy(
        str(pid), desc, str(severity), tuple(sides), filename, line, bool(enabled), str(on_expiry), int(warn),
        int(longest) if longest is not None else None,
    ), []


def build_policies(files: Iterable[tuple[str, str]]) -> tuple[tuple[Policy, ...], list[str]]:
    """Parse ``(filename, text)`` pairs; return every policy and every problem."""
    policies: list[Policy] = []
    problems: list[str] = []
    for filename, text in files:
        items, probs = _load(text, filename, "policy")
        problems += probs
        for line, raw in items:
            policy, probs = _parse_policy(raw, filename, line)
            problems += probs
            if policy is not None:
                policies.append(policy)
    seen: dict[str, Policy] = {}
    for p in policies:
        if p.id in seen:
            problems.append(f"{p.where}: policy id {p.id!r} is already used at {seen[p.id].where}")
        seen.setdefault(p.id, p)
    return tuple(seen.values()), problems


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _parse_exception(
    raw: Any, filename: str, line: int, policies: Mapping[str, Policy] | None
) -> tuple[SodException | None, list[str]]:
    where = f"{filename}:{line}: exception"
    if not isinstance(raw, dict):
        return None, [f"{where}: [[exception]] must be a table"]
    problems: list[str] = []
    unknown = set(raw) - EXCEPTION_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(EXCEPTION_KEYS)}")
    identity = _text(raw, "identity", where, problems, " (a username or stable id)")
    policy = _text(raw, "policy", where, problems, " (a policy id)")
    approver = _text(raw, "approver", where, problems, " (who approved the mitigating control)")
    reason = _text(raw, "reason", where, problems, " (the mitigating control)")
    expires = _parse_date(raw.get("expires"))
    if expires is None:
        given = f", not {toml_type(raw['expires'])}" if "expires" in raw else ""
        problems.append(f"{where}: 'expires' {'must be' if given else 'is required:'} a date such as 2027-03-31{given}")
    ticket = raw.get("ticket", "")
    if not isinstance(ticket, str):
        problems.append(f"{where}: 'ticket' must be a string")
        ticket = ""
    approved = _parse_date(raw["approved"]) if "approved" in raw else None
    if "approved" in raw and approved is None:
        problems.append(f"{where}: 'approved' must be a date such as 2027-01-02")
    known = policies.get(policy) if policies is not None else None
    if policy and policies is not None and known is None:
        problems.append(f"{where}: policy {policy!r} is not defined in mappings/sod/")
    if known is not None and known.max_exception_days is not None and expires is not None:
        if approved is None:
            problems.append(
                f"{where}: policy {policy!r} limits exceptions to {known.max_exception_days} days: "
                "'approved' (the approval date) is required"
            )
        elif (expires - approved).days > known.max_exception_days:
            problems.append(
                f"{where}: runs {(expires - approved).days} days ({approved} to {expires}), longer than the "
                f"{known.max_exception_days} days policy {policy!r} allows ({known.where})"
            )
    if approved is not None and expires is not None and approved > expires:
        problems.append(f"{where}: 'approved' ({approved}) is after 'expires' ({expires})")
    if problems or expires is None:
        return None, problems
    exc = SodException(identity, policy, approver, reason, expires, filename, line, ticket.strip(), approved)
    return exc, []


def build_exceptions(
    files: Iterable[tuple[str, str]], policies: Sequence[Policy] | None = None
) -> tuple[tuple[SodException, ...], list[str]]:
    """Parse exception files; with ``policies`` every exception must name one of them."""
    ids = {p.id: p for p in policies} if policies is not None else None
    out: list[SodException] = []
    problems: list[str] = []
    for filename, text in files:
        items, probs = _load(text, filename, "exception")
        problems += probs
        for line, raw in items:
            exc, probs = _parse_exception(raw, filename, line, ids)
            problems += probs
            if exc is not None:
                out.append(exc)
    return tuple(out), problems
