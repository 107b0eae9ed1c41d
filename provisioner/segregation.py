"""Segregation of duties in the shell: the catalog's access model, enforcement
inside a plan run (audit record + alert per violation), and the report.

The pure parts are :mod:`provisioner.core.sod` (files) and
:mod:`provisioner.core.sodeval` (evaluation); see ``docs/sod.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provisioner.config import Config
from provisioner.core.audit import EventKind
from provisioner.core.model import ActualState, DesiredState
from provisioner.core.plan import Plan
from provisioner.core.privileges import PrivilegeCatalog, effective_privileges
from provisioner.core.sodeval import AccessModel, Conflict, PrivFact, detect, enforce_sod
from provisioner.logs import log
from provisioner.mappings import Mappings
from provisioner.runtime import RunContext

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
    cfg: Config,
    mappings: Mappings,
    plan: Plan,
    desired: DesiredState,
    actual: Mapping[str, ActualState],
    ctx: RunContext,
) -> tuple[Plan, tuple[Conflict, ...]]:
    """The plan without conflicting grants; every violation audited and alerted."""
    plan, violations = enforce_sod(
        plan, desired, actual, mappings.sod, mappings.exceptions, access_model(mappings), ctx.now
    )
    if violations:
        record_violations(cfg, ctx, violations)
    return plan, violations


def record_violations(cfg: Config, ctx: RunContext, violations: Sequence[Conflict]) -> None:
    ctx.audit(
        [
            ctx.event(EventKind.VIOLATION, target=c.target, role=c.user, reason=c.describe(), after=c.to_json())
            for c in violations
        ]
    )
    for c in violations:
        log.warning("sod_violation", run_id=ctx.run_id, target=c.target, policy=c.policy.id,
                    identity=c.username, withheld=list(c.withheld))


def conflicts(
    mappings: Mappings, desired: DesiredState, actual: Mapping[str, ActualState], ctx: RunContext
) -> list[Conflict]:
    """Every conflict present on every target now (the report)."""
    model = access_model(mappings)
    out: list[Conflict] = []
    for name in sorted(actual):
        out += detect(desired, actual[name], mappings.sod, mappings.exceptions, model, ctx.now)
    return out
