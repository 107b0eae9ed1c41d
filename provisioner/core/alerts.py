"""What deserves an alert.  Pure: records, catalog, history and policy in, alerts out.

The input is the audit records of one run (their ``content()`` dicts), so an
alert can always be traced back to the records behind it.  Delivery,
deduplication and rate limiting live in ``provisioner/alerts/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from provisioner.core.audit import CHANGE_KINDS, EventKind
from provisioner.core.catalog import Catalog, Sensitivity

MEMBERSHIP_KINDS = {"grant_membership": "granted", "revoke_membership": "revoked"}
PRIVILEGE_KINDS = {"grant_privilege": "granted", "revoke_privilege": "revoked"}


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    severity: Severity
    key: str
    """Alerts with the same key within the dedup window are sent once."""
    title: str
    body: str
    facts: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "key": self.key,
            "title": self.title,
            "body": self.body,
            "facts": dict(self.facts),
        }


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    min_sensitivity: Sensitivity = Sensitivity.HIGH
    rapid_change_count: int = 5
    rapid_change_window: timedelta = timedelta(hours=1)
    failure_streak: int = 3


@dataclass(frozen=True, slots=True)
class History:
    """Counts from the store, computed by the shell before evaluation."""

    sensitive_changes_in_window: int = 0
    """Committed changes to sensitive roles within the rapid-change window (this run included)."""
    failure_streak: int = 0
    """Consecutive failed runs, most recent first (this run included)."""


def sensitive_role(content: Mapping[str, Any], catalog: Catalog, minimum: Sensitivity) -> str | None:
    """The sensitive role a committed-change record grants or revokes, if any."""
    change = content.get("change")
    if not isinstance(change, Mapping):
        return None
    kind = change.get("kind")
    if kind in MEMBERSHIP_KINDS:
        params = change.get("params")
        role = params.get("group") if isinstance(params, Mapping) else None
    elif kind in PRIVILEGE_KINDS:
        role = change.get("role")
    else:
        return None
    if isinstance(role, str) and catalog.sensitivity(role) >= minimum:
        return role
    return None


def count_sensitive(contents: Iterable[Mapping[str, Any]], catalog: Catalog, minimum: Sensitivity) -> int:
    return sum(
        1
        for c in contents
        if c.get("kind") in CHANGE_KINDS and sensitive_role(c, catalog, minimum) is not None
    )


def evaluate(
    records: Iterable[Mapping[str, Any]], catalog: Catalog, history: History, policy: AlertPolicy
) -> list[Alert]:
    alerts: list[Alert] = []
    failed: list[Mapping[str, Any]] = []
    for rec in records:  # once: ``records`` may be a stream
        kind = rec.get("kind")
        if kind == EventKind.RUN_FAILED.value:
            failed.append(rec)
        if kind in CHANGE_KINDS:
            alerts += _sensitive_change(rec, catalog, policy)
        elif kind == EventKind.BREAKER_TRIPPED.value:
            alerts.append(_breaker(rec))
        elif kind == EventKind.RUN_PLANNED.value:
            alerts += _drift(rec, catalog, policy)
    if history.sensitive_changes_in_window > policy.rapid_change_count:
        alerts.append(
            Alert(
                Severity.CRITICAL,
                "rapid_change",
                "Rapid changes to sensitive roles",
                f"{history.sensitive_changes_in_window} changes to roles of sensitivity "
                f"{policy.min_sensitivity.name.lower()} or above within {policy.rapid_change_window} "
                f"(threshold {policy.rapid_change_count}).",
                {
                    "changes": str(history.sensitive_changes_in_window),
                    "window": str(policy.rapid_change_window),
                    "threshold": str(policy.rapid_change_count),
                },
            )
        )
    if failed and history.failure_streak >= policy.failure_streak:
        alerts.append(_failing(failed[-1], history.failure_streak))
    return alerts


def _facts(rec: Mapping[str, Any], **more: str) -> dict[str, str]:
    out = {k: str(rec.get(k)) for k in ("run_id", "at", "actor", "trigger", "target") if rec.get(k)}
    out.update(more)
    return out


def _sensitive_change(rec: Mapping[str, Any], catalog: Catalog, policy: AlertPolicy) -> list[Alert]:
    role = sensitive_role(rec, catalog, policy.min_sensitivity)
    if role is None:
        return []
    change = rec["change"]
    verb = MEMBERSHIP_KINDS.get(change["kind"]) or PRIVILEGE_KINDS[change["kind"]]
    level = catalog.sensitivity(role)
    member = str(rec.get("role"))
    recovered = " (recovered after an interrupted run)" if rec.get("kind") == EventKind.CHANGE_RECOVERED else ""
    return [
        Alert(
            Severity.CRITICAL if level >= Sensitivity.CRITICAL else Severity.WARNING,
            f"sensitive:{rec.get('run_id')}:{rec.get('target')}:{change['kind']}:{member}:{role}",
            f"Sensitive role {role} {verb}: {member}",
            f"{change.get('summary', change['kind'])} on {rec.get('target')}{recovered}. "
            f"Reason: {rec.get('reason') or 'none recorded'}",
            _facts(rec, role=role, member=member, sensitivity=level.name.lower(), change=verb),
        )
    ]


def _breaker(rec: Mapping[str, Any]) -> Alert:
    target = rec.get("target") or "all targets"
    return Alert(
        Severity.CRITICAL,
        f"breaker:{target}",
        f"Circuit breaker tripped on {target}",
        f"The run was stopped by the change breaker. {rec.get('reason', '')}".strip(),
        _facts(rec),
    )


def _drift(rec: Mapping[str, Any], catalog: Catalog, policy: AlertPolicy) -> list[Alert]:
    after = rec.get("after")
    notices = after.get("notices") if isinstance(after, Mapping) else None
    if not isinstance(notices, list):
        return []
    sensitive = [n for n, r in catalog.roles.items() if r.sensitivity >= policy.min_sensitivity]
    out = []
    for notice in notices:
        if not isinstance(notice, Mapping) or notice.get("code") != "drift":
            continue
        message = str(notice.get("message", ""))
        for group in sensitive:
            if repr(group) in message:
                member = str(notice.get("role"))
                out.append(
                    Alert(
                        Severity.CRITICAL,
                        f"drift:{notice.get('target') or rec.get('target')}:{member}:{group}",
                        f"Out-of-band grant of sensitive role {group}: {member}",
                        f"{message}. Nobody granted this through the rules; investigate.",
                        _facts(rec, role=group, member=member, target=str(notice.get("target", ""))),
                    )
                )
    return out


def _failing(rec: Mapping[str, Any], streak: int) -> Alert:
    after = rec.get("after")
    error = str(after.get("error", "")) if isinstance(after, Mapping) else ""
    source = error.startswith("Source")
    what = "source unhealthy" if source else "runs failing"
    return Alert(
        Severity.CRITICAL,
        "source_unhealthy" if source else "run_failing",
        f"provisioner: {what} {streak} runs in a row",
        f"The last {streak} runs failed. Latest: {rec.get('reason', '')}",
        _facts(rec, error=error, streak=str(streak)),
    )
