"""Segregation of duties in the shell: the catalog's access model, enforcement
inside a plan run (the plan without conflicting grants, and an audit record per
violation that the run recorder appends; alerts come from those records when the
run closes), and the report.

The pure parts are :mod:`provisioner.core.governance.sod` (files) and
:mod:`provisioner.core.governance.sodeval` (evaluation); see ``docs/sod.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, tzinfo

from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.core.governance.sodeval import AccessModel, Conflict, PrivFact, detect, enforce_sod, withheld_requests
from provisioner.core.governance.sodexpiry import expired_actions, expiring_notices
from provisioner.core.governance.sodrefs import missing_tables
from provisioner.core.ownership.ledger import is_foreign
from provisioner.core.ownership.policy import DiffPolicy
from provisioner.core.privileges.spec import PrivilegeCatalog, effective_privileges
from provisioner.core.values.model import ActualState, DesiredState, RoleKind
from provisioner.core.values.plan import Plan, TargetPlan, execution_order, plan_scope
from provisioner.engine.context import RunContext
from provisioner.logs import log
from provisioner.mappings import Mappings

TABLE_KINDS = ("table", "column")


class CatalogAccess:
    """:class:`AccessModel` over the role catalog's privilege model (``inherits``, ``grants``)."""

    def __init__(self, catalog: PrivilegeCatalog) -> None:
        self._catalog = catalog
        self._cache: dict[str, tuple[PrivFact, ...]] = {}

    def parents(self, role: str) -> tuple[str, ...]:
        model = self._catalog.roles.get(role)
        return tuple(model.inherits) if model else ()

    def privileges(self, role: str) -> tuple[PrivFact, ...]:
        if role not in self._catalog.roles:
            return ()
        if role not in self._cache:
            self._cache[role] = self._compute(role)
        return self._cache[role]

    def _compute(self, role: str) -> tuple[PrivFact, ...]:
        return tuple(
            PrivFact(e.privilege, e.obj.schema, e.obj.name, e.because())
            for e in effective_privileges(self._catalog, [role])
            if e.path == (role,) and e.obj.kind in TABLE_KINDS
        )


def access_model(mappings: Mappings) -> AccessModel:
    return CatalogAccess(mappings.privileges)


def enforce(
    mappings: Mappings,
    plan: Plan,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    ctx: RunContext,
    policies: Mapping[str, DiffPolicy] | None = None,
    zone: tzinfo = UTC,
    instance: str | None = None,
) -> tuple[Plan, tuple[Conflict, ...]]:
    """The plan without conflicting grants, and every violation (a finding: the caller
    records it, :func:`violation_events`).  ``policies``: each target's diff policy, so an
    expired exception never revokes from a role provisioner does not change.  ``zone``:
    ``[lifecycle] timezone``, whose date an exception's expiry date is (valid through its end);
    ``instance``: this installation (another's roles on a shared server are not this plan's)."""
    now = ctx.now.astimezone(zone)
    before = {tp.target: plan_scope(tp.changes, tp.notices) for tp in plan.targets}  # what was fingerprinted
    plan, violations = enforce_sod(
        plan, desired, actual, mappings.sod, mappings.exceptions, access_model(mappings), now, instance
    )
    targets = tuple(
        _expiry_and_references(mappings, tp, desired, actual, now, (policies or {}).get(tp.target), instance)
        for tp in plan.targets
    )
    plan = replace(plan, targets=tuple(_refingerprint(tp, before.get(tp.target), desired, actual) for tp in targets))
    return plan, violations


def _refingerprint(
    tp: TargetPlan, scope: frozenset[str] | None, desired: DesiredState, actual: Mapping[str, ActualState]
) -> TargetPlan:
    """The fingerprint over the roles the final plan names: SoD notices may name roles the
    diff did not (an unmanaged login in conflict), and ``apply --plan`` checks the saved plan
    against exactly that scope."""
    state = actual.get(tp.target)
    now = plan_scope(tp.changes, tp.notices)
    if state is None or now == scope:
        return tp
    return replace(tp, fingerprint=state.fingerprint(now, desired.sources))


def _expiry_and_references(
    mappings: Mappings,
    tp: TargetPlan,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    now: datetime,
    policy: DiffPolicy | None = None,
    instance: str | None = None,
) -> TargetPlan:
    """Exceptions expiring or expired (revokes under on_expiry = revoke) and policy
    sides naming tables the target does not have."""
    state = actual.get(tp.target)
    if state is None or not mappings.sod:
        return tp
    present = detect(desired, state, mappings.sod, mappings.exceptions, access_model(mappings), now, instance)
    changes, notices = expired_actions(tp, present, state, policy)
    notices += expiring_notices(mappings.sod, mappings.exceptions, desired, now)
    notices += missing_tables(mappings.sod, state)
    return replace(tp, changes=execution_order((*tp.changes, *changes)), notices=(*tp.notices, *notices))


def violation_events(ctx: RunContext, violations: Sequence[Conflict]) -> tuple[AuditEvent, ...]:
    """One ``violation`` record per conflict (logged as well when the run is recorded)."""
    if ctx.store is not None:  # a recorded run; never explain or a report
        for c in violations:
            log.warning("sod_violation", run_id=ctx.run_id, target=c.target, policy=c.policy.id,
                        identity=c.username, withheld=list(c.withheld))
    return tuple(
        ctx.event(EventKind.VIOLATION, target=c.target, role=c.user, reason=c.describe(), after=c.to_json())
        for c in violations
    )


def conflicts(
    mappings: Mappings,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    ctx: RunContext,
    zone: tzinfo = UTC,
    instance: str | None = None,
) -> list[Conflict]:
    """Every conflict present on every target now (the report): this installation's logins
    and hand-made ones, exceptions valid through their expiry date in ``zone``."""
    model = access_model(mappings)
    out: list[Conflict] = []
    for name in sorted(actual):
        out += detect(
            desired, actual[name], mappings.sod, mappings.exceptions, model, ctx.now.astimezone(zone), instance
        )
    return out


def withheld(
    mappings: Mappings, desired: DesiredState, actual: Mapping[str, ActualState], ctx: RunContext, zone: tzinfo = UTC
) -> list[Conflict]:
    """Every request the rules make that SoD withholds on every target now (the report)."""
    model = access_model(mappings)
    out: list[Conflict] = []
    for name in sorted(actual):
        now = ctx.now.astimezone(zone)
        out += withheld_requests(desired, actual[name], mappings.sod, mappings.exceptions, model, now)
    return out


def foreign_logins(actual: Mapping[str, ActualState], instance: str | None) -> int:
    """Login roles another installation manages on these targets (left out of this one's report)."""
    return sum(
        1
        for state in actual.values()
        for role in state.roles.values()
        if role.marker is not None and role.marker.kind is RoleKind.USER and is_foreign(role.marker, instance)
    )
