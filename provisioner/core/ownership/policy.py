"""What provisioner may touch: the diff policy (protected and break-glass roles, drift,
leavers, instance) and the one test of a protected role, shared by every planner. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from provisioner.core.identity.lifecycle import LeaverPolicy
from provisioner.core.values.model import ActualRole, ActualState


@dataclass(frozen=True, slots=True)
class DiffPolicy:
    protected: frozenset[str] = frozenset()
    drift: Literal["report", "revoke"] = "report"
    drift_overrides: Mapping[str, Literal["report", "revoke"]] = field(default_factory=dict)
    """Per role name: overrides ``drift``."""
    break_glass: frozenset[str] = frozenset()
    """Emergency accounts: never changed (like ``protected``), reported when used."""
    leavers: LeaverPolicy = field(default_factory=LeaverPolicy)
    instance: str | None = None
    """This installation's name (``[provisioner] instance``): written into every marker;
    roles marked by another installation are foreign (core/ownership/ledger.py).  None: not in use."""


def is_protected(role: ActualRole, actual: ActualState, policy: DiffPolicy) -> bool:
    """Superusers, built-in and replication roles, roles that bypass RLS, the
    session's own role and the configured list are never changed."""
    return (
        role.superuser
        or role.system
        or role.replication
        or role.bypassrls
        or role.name == actual.session_role
        or role.name in policy.protected
        or role.name in policy.break_glass
    )
