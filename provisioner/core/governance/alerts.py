"""What deserves an alert.  Pure: records, catalog, history and policy in, alerts out.

The input is the audit records of one run (their ``content()`` dicts), so an
alert can always be traced back to the records behind it.  Delivery,
deduplication and rate limiting live in ``provisioner/alerts/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from provisioner.core.governance.audit import CHANGE_KINDS, EventKind
from provisioner.core.governance.sodexpiry import EXPIRED_CODE, EXPIRING_CODE
from provisioner.core.privileges.catalog import Catalog, Sensitivity
from provisioner.core.privileges.drift import DRIFT_CODE, PUBLIC_CODE, notice_sensitivity
from provisioner.core.reconcile.escalation import ATTRIBUTE_CODE, INCOMPLETE_CODE
from provisioner.core.values.grants import Obj

MEMBERSHIP_KINDS = {"grant_membership": "granted", "revoke_membership": "revoked"}
EVALUATED_KINDS = frozenset(
    {
        EventKind.RUN_FAILED,
        EventKind.CHANGE_FAILED,
        EventKind.RUN_FINISHED,
        EventKind.BREAKER_TRIPPED,
        EventKind.OVERRIDE,
        EventKind.VIOLATION,
        EventKind.RUN_PLANNED,
        *CHANGE_KINDS,
    }
)
"""The record kinds :func:`evaluate` reads; records of other kinds (apply intents, which
hold every change of a transaction, begun / completed markers ...) never raise an alert."""
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
    previous_failure_streak: int = 0
    """Consecutive failed runs before this one (for the "recovered" message)."""
    burst_started: str = ""
    """When the oldest sensitive change within the rapid-change window was made: names the burst."""


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
    """Alerts for one run's records.  A run that changed nothing and found nothing raises none."""
    alerts: list[Alert] = []
    changed_sensitive = False
    failed: list[Mapping[str, Any]] = []
    refused: list[Mapping[str, Any]] = []
    finished: list[Mapping[str, Any]] = []
    for rec in records:  # once: ``records`` may be a stream
        kind = rec.get("kind")
        if kind == EventKind.RUN_FAILED.value:
            failed.append(rec)
        elif kind == EventKind.CHANGE_FAILED.value:
            refused.append(rec)
        elif kind == EventKind.RUN_FINISHED.value:
            finished.append(rec)
        if kind in CHANGE_KINDS:
            found = _sensitive_change(rec, catalog, policy)
            changed_sensitive = changed_sensitive or bool(found)
            alerts += found
        elif kind == EventKind.BREAKER_TRIPPED.value:
            alerts.append(_breaker(rec))
        elif kind == EventKind.OVERRIDE.value:
            alerts.append(_override(rec))
        elif kind == EventKind.VIOLATION.value:
            alerts += _violation(rec)
        elif kind == EventKind.RUN_PLANNED.value:
            alerts += _drift(rec, catalog, policy)
    if changed_sensitive and history.sensitive_changes_in_window > policy.rapid_change_count:
        alerts.append(
            Alert(
                Severity.CRITICAL,
                f"rapid_change:{history.burst_started}",
                "Rapid changes to sensitive roles",
                f"{history.sensitive_changes_in_window} changes to roles of sensitivity "
                f"{policy.min_sensitivity.name.lower()} or above within {policy.rapid_change_window} "
                f"(threshold {policy.rapid_change_count}), the first at {history.burst_started}.",
                {
                    "changes": str(history.sensitive_changes_in_window),
                    "window": str(policy.rapid_change_window),
                    "threshold": str(policy.rapid_change_count),
                    "burst_started": history.burst_started,
                },
            )
        )
    if refused:
        alerts.append(_changes_failed(refused))
    if failed and history.failure_streak >= policy.failure_streak:
        alerts.append(_failing(failed[-1], history.failure_streak))
    if finished and not failed and history.previous_failure_streak >= policy.failure_streak:
        alerts.append(_recovered(finished[-1], history.previous_failure_streak))
    return alerts


def _changes_failed(records: Sequence[Mapping[str, Any]]) -> Alert:
    """Changes a target refused (isolated; everything else of the run applied)."""
    lines = [
        f"{r.get('target')}: {(r.get('change') or {}).get('summary', r.get('role'))}: {r.get('reason')}"
        for r in records
    ]
    first = records[0]
    return Alert(
        Severity.CRITICAL,
        f"change_failed:{first.get('run_id')}",
        f"{len(records)} change(s) did not happen",
        "The target refused these changes; every other change of the run was applied and the "
        "next run retries them:\n" + "\n".join(lines),
        _facts(first, failed=str(len(records))),
    )


def chain_broken_alert(message: str) -> Alert:
    """The audit chain does not verify: nothing more is signed until someone looks."""
    return Alert(
        Severity.CRITICAL,
        "audit_chain_broken",
        "Audit trail broken: runs stopped, nothing signed",
        f"{message}. Investigate before anything else; the evidence may have been forged.",
        {"check": "provisioner audit verify --checkpoints <shipped checkpoints>"},
    )


def reload_failed_alert(error: str) -> Alert:
    return Alert(
        Severity.CRITICAL,
        "daemon_reload_failed",
        "provisioner daemon: configuration reload failed; the previous configuration stays in force",
        error,
        {"error": error.split(":")[0]},
    )


def delivery_failed_alert(channel: str, failing: int, error: str) -> Alert:
    return Alert(
        Severity.CRITICAL,
        f"alert_delivery_failed:{channel}",
        f"Alerts cannot be delivered to {channel}",
        f"{failing} alert(s) wait in the outbox for {channel}, which keeps failing: {error}. "
        "They are retried with backoff and sent once it is back.",
        {"channel": channel, "waiting": str(failing), "error": error},
    )


def held_back_digest(channel: str, titles: Sequence[str], hour: str) -> Alert:
    shown = "; ".join(titles[:20]) + (f"; and {len(titles) - 20} more" if len(titles) > 20 else "")
    return Alert(
        Severity.WARNING,
        f"rate_limited_digest:{channel}:{hour}",
        f"{len(titles)} alert(s) held back by the rate cap on {channel}",
        f"Held back this hour (see the log for details): {shown}",
        {"channel": channel, "held_back": str(len(titles))},
    )


def _facts(rec: Mapping[str, Any], **more: str) -> dict[str, str]:
    out = {k: str(rec.get(k)) for k in ("run_id", "at", "actor", "trigger", "target") if rec.get(k)}
    out.update(more)
    return out


def _sensitive_change(rec: Mapping[str, Any], catalog: Catalog, policy: AlertPolicy) -> list[Alert]:
    role = sensitive_role(rec, catalog, policy.min_sensitivity)
    if role is None:
        return []
    change = rec["change"]
    level = catalog.sensitivity(role)
    recovered = " (recovered after an interrupted run)" if rec.get("kind") == EventKind.CHANGE_RECOVERED else ""
    severity = Severity.CRITICAL if level >= Sensitivity.CRITICAL else Severity.WARNING
    body = (
        f"{change.get('summary', change['kind'])} on {rec.get('target')}{recovered}. "
        f"Reason: {rec.get('reason') or 'none recorded'}"
    )
    if change["kind"] in PRIVILEGE_KINDS:
        verb = PRIVILEGE_KINDS[change["kind"]]
        params = change.get("params")
        params = params if isinstance(params, Mapping) else {}
        privilege = str(params.get("privileges") or "?")
        obj = Obj.from_params(params).describe()
        return [
            Alert(
                severity,
                f"sensitive:{rec.get('run_id')}:{rec.get('target')}:{change['kind']}:{role}:{privilege}:{obj}",
                f"Privilege {privilege} on {obj} {verb} {'to' if verb == 'granted' else 'from'} sensitive role {role}",
                body,
                _facts(rec, role=role, privilege=privilege, object=obj, sensitivity=level.name.lower(), change=verb),
            )
        ]
    verb = MEMBERSHIP_KINDS[change["kind"]]
    member = str(rec.get("role"))
    return [
        Alert(
            severity,
            f"sensitive:{rec.get('run_id')}:{rec.get('target')}:{change['kind']}:{member}:{role}",
            f"Sensitive role {role} {verb} {'to' if verb == 'granted' else 'from'} {member}",
            body,
            _facts(rec, role=role, member=member, sensitivity=level.name.lower(), change=verb),
        )
    ]


def _violation(rec: Mapping[str, Any]) -> list[Alert]:
    """A segregation-of-duties conflict the plan withheld a grant for (docs/sod.md)."""
    c = rec.get("after")
    if not isinstance(c, Mapping):
        return []
    withheld = ", ".join(str(w) for w in c.get("withheld") or [])
    severity = Severity.CRITICAL if c.get("severity") in ("high", "critical") else Severity.WARNING
    return [
        Alert(
            severity,
            f"sod:{c.get('target')}:{c.get('user')}:{c.get('policy')}:{withheld}",
            f"Segregation of duties: grant withheld from {c.get('identity')}",
            str(rec.get("reason") or ""),
            {
                "policy": str(c.get("policy")),
                "identity": str(c.get("identity")),
                "role": str(c.get("user")),
                "target": str(c.get("target")),
                "withheld": withheld,
                "severity": str(c.get("severity")),
            },
        )
    ]


def _override(rec: Mapping[str, Any]) -> Alert:
    target = rec.get("target") or "all targets"
    return Alert(
        Severity.CRITICAL,
        f"override:{rec.get('run_id')}:{target}",
        f"Safety override on {target} by {rec.get('actor')}",
        f"The mass-revocation breaker or source health gate was overridden. Reason: {rec.get('reason') or 'none'}",
        _facts(rec),
    )


def _recovered(rec: Mapping[str, Any], streak: int) -> Alert:
    return Alert(
        Severity.INFO,
        f"recovered:{rec.get('run_id')}",
        f"provisioner: runs succeed again after {streak} failures",
        "The latest run finished; the failing streak is over.",
        _facts(rec, streak=str(streak)),
    )


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
        if isinstance(notice, Mapping) and notice.get("code") in (DRIFT_CODE, PUBLIC_CODE):
            out += _privilege_drift(rec, notice, policy)
        if isinstance(notice, Mapping) and notice.get("code") in (ATTRIBUTE_CODE, INCOMPLETE_CODE):
            out.append(_escalation(rec, notice))
        if isinstance(notice, Mapping) and notice.get("code") in (EXPIRING_CODE, EXPIRED_CODE):
            out.append(_exception_expiry(rec, notice))
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


def _privilege_drift(rec: Mapping[str, Any], notice: Mapping[str, Any], policy: AlertPolicy) -> list[Alert]:
    """A privilege outside the catalog (held by a managed role or PUBLIC) on an
    object of sensitivity ``min_sensitivity`` or above."""
    message = str(notice.get("message", ""))
    level = notice_sensitivity(message)
    if level is None or level < policy.min_sensitivity:
        return []
    holder = str(notice.get("role"))
    target = str(notice.get("target") or rec.get("target") or "")
    who = "PUBLIC (every role)" if notice.get("code") == PUBLIC_CODE else holder
    return [
        Alert(
            Severity.CRITICAL if level >= Sensitivity.CRITICAL else Severity.WARNING,
            f"privilege_drift:{target}:{holder}:{message}",
            f"Privilege outside the catalog on a {level.name.lower()} object: {who}",
            f"{message}. The role catalog does not grant this; investigate.",
            _facts(rec, role=holder, sensitivity=level.name.lower(), target=target),
        )
    ]


def _escalation(rec: Mapping[str, Any], notice: Mapping[str, Any]) -> Alert:
    role = str(notice.get("role"))
    target = str(notice.get("target") or rec.get("target") or "")
    leaver = notice.get("code") == INCOMPLETE_CODE
    title = f"Leaver {role} could not be fully disabled" if leaver else f"Managed role {role} bypasses all controls"
    return Alert(
        Severity.CRITICAL,
        f"{notice.get('code')}:{target}:{role}",
        title,
        str(notice.get("message", "")),
        _facts(rec, role=role, target=target),
    )


def _exception_expiry(rec: Mapping[str, Any], notice: Mapping[str, Any]) -> Alert:
    expired = notice.get("code") == EXPIRED_CODE
    role = str(notice.get("role"))
    message = str(notice.get("message", ""))
    return Alert(
        Severity.CRITICAL if expired else Severity.WARNING,
        f"{notice.get('code')}:{notice.get('target') or rec.get('target')}:{role}:{message[:80]}",
        f"SoD exception {'expired' if expired else 'expiring'}: {role}",
        message,
        _facts(rec, role=role, target=str(notice.get("target") or rec.get("target") or "")),
    )


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
