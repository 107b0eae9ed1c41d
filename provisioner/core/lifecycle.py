"""Joiner / mover / leaver classification of one identity at one instant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from provisioner.core.model import Identity, Lifecycle, Reason


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    terminated_statuses: frozenset[str] = frozenset({"terminated", "inactive", "leaver", "retired"})

    @classmethod
    def from_statuses(cls, statuses: Iterable[str]) -> LifecyclePolicy:
        return cls(frozenset(s.casefold() for s in statuses))


def parse_instant(text: str) -> datetime | None:
    """``YYYY-MM-DD`` means 00:00 UTC that day; a full ISO timestamp is used as is."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def classify(
    ident: Identity, now: datetime, policy: LifecyclePolicy
) -> tuple[Lifecycle, Reason, datetime | None]:
    """Return the lifecycle state, why, and the instant access must end (if any)."""
    if not ident.enabled:
        return Lifecycle.LEAVER, Reason("lifecycle:leaver", "account disabled in the directory"), None
    status = ident.first("status")
    if status and status.casefold() in policy.terminated_statuses:
        return Lifecycle.LEAVER, Reason("lifecycle:leaver", f"status={status!r}", (("status", status),)), None
    leave_raw = ident.first("leave_date")
    leave = parse_instant(leave_raw) if leave_raw else None
    if leave_raw and leave is not None and leave <= now:
        return (
            Lifecycle.LEAVER,
            Reason("lifecycle:leaver", f"leave_date={leave_raw!r} has passed", (("leave_date", leave_raw),)),
            None,
        )
    hire_raw = ident.first("hire_date")
    hire = parse_instant(hire_raw) if hire_raw else None
    if hire_raw and hire is not None and hire > now:
        return (
            Lifecycle.FUTURE_HIRE,
            Reason(
                "lifecycle:joiner", f"hire_date={hire_raw!r} is in the future", (("hire_date", hire_raw),)
            ),
            leave,
        )
    return Lifecycle.ACTIVE, Reason("lifecycle:active", "active in the directory"), leave
