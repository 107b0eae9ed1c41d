"""Privilege drift: grants the role catalog does not give.  Pure.

:mod:`provisioner.core.privileges.diff` owns the privileges of catalog roles that
declare them (``grants`` / ``extras``).  Everything else a target holds is
looked at here, so no grant escapes the detective controls:

* privileges held by any other **managed** role -- a person's login role, or a
  rule role that the catalog does not describe (``dept_trading``) -- are
  drift: a ``privilege_drift`` warning, or a ``revoke_privilege`` change under
  the target's ``drift = "revoke"`` (per role: ``drift_overrides``);
* privileges held by **PUBLIC** (every role) on the managed databases,
  including PostgreSQL's built-in defaults (``CONNECT``/``TEMPORARY`` on a
  database, ``EXECUTE`` on a function): a ``public_privilege`` warning, or a
  revoke when the catalog opts in (``[public] privileges = "revoke"``).

Each finding carries the sensitivity of the object it is on: the highest
sensitivity of any catalog role that has a grant on the object (or its table),
so a hand ``GRANT UPDATE ON trading.approvals`` rates as critical as the
approver role.  The alert rules (:mod:`provisioner.core.governance.alerts`) read it from
the notice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from provisioner.core.ownership.policy import DiffPolicy, is_protected
from provisioner.core.privileges.catalog import Catalog, Sensitivity
from provisioner.core.privileges.diff import desired_grants
from provisioner.core.privileges.spec import PrivilegeCatalog
from provisioner.core.values.grants import COLUMN, DATABASE, PUBLIC, TABLE, Obj, sort_privileges
from provisioner.core.values.model import ActualState, Reason
from provisioner.core.values.plan import Change, ChangeKind, Draft, Notice, NoticeLevel, make_change

DRIFT_CODE = "privilege_drift"
PUBLIC_CODE = "public_privilege"
_SENSITIVITY = re.compile(r"\[sensitivity (low|medium|high|critical)\]")


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    diff: DiffPolicy = field(default_factory=DiffPolicy)
    public: str = "report"
    """``report`` or ``revoke`` (the catalog's ``[public] privileges``)."""
    default_owners: tuple[str, ...] = ()


def notice_sensitivity(message: str) -> Sensitivity | None:
    """The sensitivity a drift or PUBLIC notice was rated with, if any."""
    found = _SENSITIVITY.search(message)
    return Sensitivity.parse(found.group(1)) if found else None


def object_sensitivity(
    privileges: PrivilegeCatalog, catalog: Catalog, actual: ActualState, default_owners: tuple[str, ...] = ()
) -> dict[Obj, tuple[Sensitivity, str]]:
    """Per object (tables also for their columns): the highest sensitivity of
    a catalog role granting anything on it, and that role."""
    out: dict[Obj, tuple[Sensitivity, str]] = {}
    snap = actual.privileges
    if snap is None:
        return out
    for name in sorted(privileges.roles):
        level = catalog.sensitivity(name)
        want, _, _ = desired_grants(privileges.roles[name], snap, default_owners)
        for grant in want:
            for obj in _and_table(grant.obj):
                if obj not in out or out[obj][0] < level:
                    out[obj] = (level, name)
    return out


def _and_table(obj: Obj) -> tuple[Obj, ...]:
    if obj.kind == COLUMN:
        return obj, Obj(obj.database, TABLE, obj.schema, obj.name)
    return (obj,)


PATTERN = " (pattern)"
"""A MariaDB database-level grant named by a LIKE pattern (targets/mysql_privileges.py)."""
OBJECT_PRIVILEGES = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "INDEX", "REFERENCES", "TRIGGER", "EXECUTE",
     "LOCK TABLES", "SHOW VIEW", "CREATE VIEW", "DELETE HISTORY", "ALL PRIVILEGES"}
)
"""Privileges that reach the objects they cover (``PROCESS`` on ``*.*`` reaches none)."""


def _like(pattern: str) -> re.Pattern[str]:
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _covers(wide: Obj, obj: Obj, privs: Iterable[str]) -> bool:
    """Whether a grant on ``wide`` reaches ``obj``: MariaDB's global ``*.*`` (an object
    privilege) every object; ``all tables in schema s`` (also a pattern ``s (pattern)``) every
    table and column of the schemas it names, and so on per kind."""
    if wide.kind == DATABASE and not wide.database:
        return any(p in OBJECT_PRIVILEGES for p in privs)
    if wide.name != "*" or wide.database != obj.database or obj == wide:
        return False
    if obj.kind != wide.kind and not (wide.kind == TABLE and obj.kind == COLUMN):
        return False
    if wide.schema.endswith(PATTERN):
        return _like(wide.schema[: -len(PATTERN)]).fullmatch(obj.schema) is not None
    return wide.schema == obj.schema


def _rating(
    obj: Obj, ratings: Mapping[Obj, tuple[Sensitivity, str]], privs: Iterable[str] = ()
) -> tuple[Sensitivity, str]:
    """The object's own rating (a column's also its table's); a grant wider than one object
    (``*.*``, ``db.*``) the highest of every rated object it covers."""
    found = [ratings[o] for o in _and_table(obj) if o in ratings]
    if obj.name == "*" or obj.kind == DATABASE:
        found += [r for o, r in ratings.items() if _covers(obj, o, privs)]
    return max(found) if found else (Sensitivity.LOW, "")


def plan_privilege_drift(
    privileges: PrivilegeCatalog, catalog: Catalog, actual: ActualState, policy: DriftPolicy
) -> tuple[list[Change], list[Notice]]:
    """Changes (revokes under ``drift``/``public`` = revoke) and notices for every
    grant held by PUBLIC or a managed role whose privileges the catalog does not own."""
    snap = actual.privileges
    if snap is None:
        return [], []
    owned = {n for n, m in privileges.roles.items() if m.manages_privileges}
    ratings = object_sensitivity(privileges, catalog, actual, policy.default_owners)
    by_holder: dict[tuple[str, Obj], list[str]] = {}
    for g in snap.grants:
        if g.role in owned:
            continue
        if g.role != PUBLIC:
            role = actual.roles.get(g.role)
            if role is None or role.marker is None:
                continue
        by_holder.setdefault((g.role, g.obj), []).append(g.privilege)
    out = Draft()
    for (holder, obj), privs in sorted(by_holder.items()):
        text = ", ".join(sort_privileges(tuple(privs)))
        level, rated_by = _rating(obj, ratings, privs)
        tag = f"[sensitivity {level.name.lower()}]" + (f" ({rated_by} grants on it)" if rated_by else "")
        if holder == PUBLIC:
            _public(out, obj, privs, text, tag, policy)
        else:
            _managed(out, holder, obj, privs, text, tag, actual, policy)
    return out.changes, out.notices


def _public(out: Draft, obj: Obj, privs: list[str], text: str, tag: str, policy: DriftPolicy) -> None:
    if policy.public == "revoke":
        reason = Reason("catalog:public", f"PUBLIC may hold nothing the catalog does not grant (public = revoke) {tag}")
        out.changes.append(_revoke(PUBLIC, obj, privs, reason))
        return
    out.note(
        NoticeLevel.WARNING,
        PUBLIC_CODE,
        f"PUBLIC holds {text} on {obj.describe()}: every role can use it, whatever the rules say "
        f"(public = report) {tag}",
        PUBLIC,
    )


def _managed(
    out: Draft, holder: str, obj: Obj, privs: list[str], text: str, tag: str, actual: ActualState, policy: DriftPolicy
) -> None:
    role = actual.roles[holder]
    kind = "login role" if role.login else "role"
    if is_protected(role, actual, policy.diff):
        out.note(
            NoticeLevel.ERROR,
            DRIFT_CODE,
            f"managed {kind} {holder} holds {text} on {obj.describe()}, which the catalog does not grant; "
            f"it is protected, so it is not revoked {tag}",
            holder,
        )
        return
    if policy.diff.drift_overrides.get(holder, policy.diff.drift) == "revoke":
        why = f"{holder} holds {text} on {obj.describe()} outside the catalog (drift = revoke) {tag}"
        reason = Reason("drift", why)
        out.changes.append(_revoke(holder, obj, privs, reason))
        return
    out.note(
        NoticeLevel.WARNING,
        DRIFT_CODE,
        f"managed {kind} {holder} holds {text} on {obj.describe()}, which the catalog does not grant "
        f"(drift = report) {tag}",
        holder,
    )


def _revoke(role: str, obj: Obj, privs: Iterable[str], reason: Reason) -> Change:
    return make_change(
        ChangeKind.REVOKE_PRIVILEGE,
        role,
        [reason],
        privileges=", ".join(sort_privileges(tuple(privs))),
        object=obj.describe(),
        before={"held": True},
        after={"held": False},
        **obj.to_params(),
    )
