"""Segregation-of-duties policies must name things that exist.  Pure.

A policy side naming a role nobody can hold, or a table that is not there,
would silently check nothing.  At load time (``provisioner validate``) every
role side must be a catalog role or a role some rule grants (templates such as
``dept_{department}`` match by pattern); at plan time every table side must
exist in a database of the target (:func:`missing_tables`).
"""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.core.governance.sod import Policy
from provisioner.core.identity.placeholders import matcher
from provisioner.core.identity.rules import RuleSet
from provisioner.core.privileges.catalog import Catalog
from provisioner.core.values.model import ActualState
from provisioner.core.values.plan import Notice, NoticeLevel


def reference_problems(policies: Sequence[Policy], catalog: Catalog, rules: RuleSet) -> list[str]:
    """Every role side that no catalog entry and no rule can give, with file and line."""
    known = {name.casefold() for name in catalog.roles}
    templates = [matcher(g) for r in rules.rules for g in r.grants]
    problems = []
    for policy in policies:
        for side in policy.sides:
            if not side.is_role or side.role.casefold() in known:
                continue
            if any(t.fullmatch(side.role) for t in templates):
                continue
            problems.append(
                f"{policy.where}: policy {policy.id!r} names role {side.role!r}, which is neither a catalog "
                "role nor granted by any rule: the side would check nothing"
            )
    return problems


def missing_tables(policies: Sequence[Policy], state: ActualState) -> list[Notice]:
    """An error notice per enabled policy's table side that no database of the
    target has (nothing when the target's objects are not read)."""
    if not state.capabilities.object_privileges:
        return _unchecked(policies, state)
    snap = state.privileges
    if snap is None:
        return []
    out = []
    for policy in policies:
        if not policy.enabled:
            continue
        for side in policy.sides:
            if side.is_role:
                continue
            if any(side.table in inv.tables.get(side.schema, ()) for inv in snap.databases.values()):
                continue
            out.append(
                Notice(
                    NoticeLevel.ERROR,
                    "sod_reference",
                    f"SoD policy {policy.id!r} ({policy.where}) names table {side.schema}.{side.table}, which "
                    f"does not exist in database(s) {', '.join(sorted(snap.databases))} of target "
                    f"{state.target}: the side {side.describe()} checks nothing",
                )
            )
    return out


def _unchecked(policies: Sequence[Policy], state: ActualState) -> list[Notice]:
    """A target that cannot manage object privileges (MariaDB) holds none from the catalog and
    none is read: a warning per enabled policy with a privilege side, which checks nothing there."""
    out = []
    for policy in policies:
        sides = [s.describe() for s in policy.sides if not s.is_role]
        if not policy.enabled or not sides:
            continue
        out.append(
            Notice(
                NoticeLevel.WARNING,
                "sod_unchecked",
                f"SoD policy {policy.id!r} ({policy.where}): side(s) {', '.join(sides)} check nothing on target "
                f"{state.target} ({state.capabilities.dialect}), which does not manage or read object privileges; "
                "only its role sides are enforced there (name the roles that carry the privilege instead)",
            )
        )
    return out
