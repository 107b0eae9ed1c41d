"""Identities + rules -> the desired state of every target."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from provisioner.core.lifecycle import LifecyclePolicy, classify
from provisioner.core.model import (
    DesiredState,
    DesiredUser,
    Identity,
    Lifecycle,
    Reason,
    SourceSnapshot,
)
from provisioner.core.naming import NamingPolicy, assign_names
from provisioner.core.rules import RuleSet


def desired_state(
    snapshots: Iterable[SourceSnapshot],
    rules: RuleSet,
    naming: NamingPolicy,
    lifecycle: LifecyclePolicy,
    now: datetime,
) -> DesiredState:
    snaps = list(snapshots)
    identities = [i for s in snaps for i in s.identities]
    names = assign_names(identities, naming)
    today = now.date()
    users: dict[str, DesiredUser] = {}
    groups: set[str] = set()
    for ident in identities:
        name = names.names.get(ident.stable_id)
        if name is None or name in users:
            continue
        user = _desired_user(ident, name, rules, lifecycle, now, today)
        users[name] = user
        groups.update(user.memberships)
    return DesiredState(
        users=users,
        groups=frozenset(groups),
        sources=frozenset(s.source for s in snaps),
        problems=names.problems,
        held=names.held,
    )


def _desired_user(
    ident: Identity, name: str, rules: RuleSet, lifecycle: LifecyclePolicy, now: datetime, today: object
) -> DesiredUser:
    state, why, valid_until = classify(ident, now, lifecycle)
    memberships: dict[str, tuple[Reason, ...]] = {}
    if state is Lifecycle.ACTIVE:
        for grant in rules.grants_for(ident, now.date()):
            if grant.role != name:
                memberships[grant.role] = (*memberships.get(grant.role, ()), grant.reason)
    return DesiredUser(
        name=name,
        stable_id=ident.stable_id,
        username=ident.username,
        source=ident.source,
        lifecycle=state,
        lifecycle_reason=why,
        valid_until=valid_until,
        memberships=memberships,
    )
