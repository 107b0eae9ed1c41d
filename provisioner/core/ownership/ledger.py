"""Who owns a role, and which of its memberships provisioner granted.  Pure: no I/O.

* A role belongs to this installation when its marker names this installation
  (``[provisioner] instance``), or names none (a marker of an older version, claimed
  and upgraded by the first run).  A marker naming another installation makes the
  role *foreign*: never changed, never counted as vanished, reported once per plan.
* A login role belongs to the stable id (and source) in its marker, never to
  whoever has its name now.
* The membership ledger (``Marker.granted``) lists the groups provisioner granted
  the role.  Only those are revoked when no rule wants them any more (a mover); any
  other membership is drift (docs/lifecycle.md).  Ledger entries the role is no
  longer a member of mean nothing and are dropped when the marker is next written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from provisioner.core.values.model import ActualRole, ActualState, DesiredState, Marker, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Notice, NoticeLevel, make_change

INSTANCE_CHANGED = "instance_changed"
"""Notice code: roles of this installation carry an older derived installation name."""
DERIVED_PREFIX = "auto-"


def is_foreign(marker: Marker | None, instance: str | None) -> bool:
    """The marker names another installation (None ``instance``: installations not in use)."""
    return marker is not None and instance is not None and marker.instance is not None and marker.instance != instance


def mine(role: ActualRole, instance: str | None) -> Marker | None:
    """The role's marker when it is this installation's to manage, else None."""
    m = role.marker
    return None if m is None or is_foreign(m, instance) else m


def ledger(role: ActualRole, wanted: Iterable[str] = ()) -> frozenset[str]:
    """The memberships of ``role`` that provisioner granted.

    A marker written before the ledger existed (``granted`` None) is upgraded by taking
    the memberships the rules want now (``wanted``): those the tool would have granted;
    every other membership is drift until an operator adopts it (``provisioner adopt``)."""
    m = role.marker
    if m is None:
        return frozenset()
    if m.granted is None:
        return role.member_of & frozenset(wanted)
    return m.granted & role.member_of


def with_ledger(marker: Marker, granted: Iterable[str], instance: str | None) -> Marker:
    """``marker`` with this installation's name and the given ledger."""
    return replace(marker, instance=instance if instance is not None else marker.instance, granted=frozenset(granted))


def needs_upgrade(marker: Marker, instance: str | None) -> bool:
    return (instance is not None and marker.instance != instance) or marker.granted is None


def foreign_summary(actual: ActualState, instance: str | None) -> str | None:
    """One line naming every other installation with roles on this target, or None."""
    counts: Counter[str] = Counter(
        r.marker.instance for r in actual.roles.values() if r.marker is not None and r.marker.instance is not None
        if is_foreign(r.marker, instance)
    )
    if not counts:
        return None
    each = ", ".join(f"{name!r}: {n}" for name, n in sorted(counts.items()))
    return (
        f"{sum(counts.values())} role(s) belong to other provisioner installation(s) ({each}); "
        f"never changed by this installation ({instance!r})"
    )


def renamed_installation(desired: DesiredState, actual: ActualState, instance: str | None) -> list[Notice]:
    """One error notice per older *derived* installation name (``auto-...``) whose roles
    provably are this installation's: a login role marked by it has the very name and the
    identity (source + stable id) this installation's sources map to that name now.  A
    derived name follows the sources' location; moving an LDIF or changing an LDAP URL
    would otherwise turn every role this installation made into a foreign one whose
    leavers nobody disables.  (Two installations reading one directory under different
    naming never share a role name; a role name with the same identity is ours.)"""
    if instance is None:
        return []
    proof: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    for role in actual.roles.values():
        m = role.marker
        if m is None or m.instance is None or not m.instance.startswith(DERIVED_PREFIX) or not is_foreign(m, instance):
            continue
        counts[m.instance] += 1
        user = desired.users.get(role.name)
        if m.kind is RoleKind.USER and user is not None and (user.source, user.stable_id) == (m.source, m.stable_id):
            proof.setdefault(m.instance, []).append(role.name)
    out = []
    for old, names in sorted(proof.items()):
        how = "derived from the sources" if instance.startswith(DERIVED_PREFIX) else "configured"
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        out.append(
            Notice(
                NoticeLevel.ERROR,
                INSTANCE_CHANGED,
                f"target {actual.target}: {counts[old]} role(s) are marked by installation {old!r} and hold "
                f"identities this installation reads under the same names ({shown}): they were made here "
                f"before its name changed from {old!r} to {instance!r} ({how}; a derived name changes when a "
                f"source's location, name or type changes). As another installation's roles their leavers "
                f"would never be disabled, so nothing is applied: pin the old name in the configuration, "
                f'[provisioner] instance = "{old}", and run again',
            )
        )
    return out


def owners(actual: ActualState, instance: str | None) -> Mapping[tuple[str | None, str], ActualRole]:
    """(source, stable id) -> this installation's login role for that identity."""
    out: dict[tuple[str | None, str], ActualRole] = {}
    for role in actual.roles.values():
        m = mine(role, instance)
        if m is not None and m.kind is RoleKind.USER and m.stable_id:
            out[(m.source, m.stable_id)] = role
    return out


def adoption(
    actual: ActualState, role_name: str, groups: Iterable[str], instance: str | None, why: str
) -> tuple[Change | None, list[str]]:
    """The change that records memberships granted outside provisioner (before the first
    run, or by hand) in ``role_name``'s ledger, so that from now on provisioner revokes them
    when no rule wants them; or every reason it cannot (nothing changes then)."""
    role = actual.roles.get(role_name)
    wanted = sorted(set(groups))
    if role is None:
        return None, [f"target {actual.target}: role {role_name!r} does not exist"]
    m = mine(role, instance)
    if m is None or m.kind is not RoleKind.USER:
        owner = "another installation" if is_foreign(role.marker, instance) else "nobody (not managed)"
        return None, [f"target {actual.target}: {role_name!r} is not a login role of this installation: {owner}"]
    problems = [
        f"target {actual.target}: {role_name!r} is not a member of {g!r}; nothing to adopt"
        for g in wanted
        if g not in role.member_of
    ]
    if problems or not wanted:
        return None, problems or ["name at least one membership to adopt"]
    before = ledger(role)
    new = with_ledger(m, before | frozenset(wanted), instance)
    reason = Reason("ownership:adopt", f"memberships {', '.join(wanted)} adopted by an operator: {why}")
    change = make_change(
        ChangeKind.SET_MARKER,
        role_name,
        [reason],
        marker=new.to_json(),
        before={"granted": sorted(before)},
        after={"granted": sorted(new.granted or ())},
    )
    return change, []


def ledger_revokes(changes: Iterable[Change], role: ActualRole, instance: str | None) -> list[Change]:
    """A leaver's revokes carry the marker with the ledger after each, like a mover's: a
    stale ledger entry would later take a DBA's hand grant for provisioner's own."""
    m = role.marker
    if m is None:
        return list(changes)
    now = set(ledger(role))
    out = []
    for c in changes:
        if c.kind is ChangeKind.REVOKE_MEMBERSHIP:
            now.discard(str(c.param("group")))
            marker = with_ledger(m, now, instance).to_json()
            c = replace(c, params=tuple(sorted((*c.params, ("marker", marker)))))
        out.append(c)
    return out


def upgrade_marker(name: str, role: ActualRole, granted: frozenset[str], instance: str | None) -> list[Change]:
    """A marker of an older version (no installation name, no ledger) is rewritten in place."""
    m = role.marker
    if m is None or not needs_upgrade(m, instance):
        return []
    new = with_ledger(m, granted, instance)
    what = ", ".join(sorted(granted)) or "none"
    reason = Reason(
        "ownership:upgrade",
        f"marker now names installation {new.instance!r} and the memberships provisioner granted ({what})",
    )
    return [make_change(ChangeKind.SET_MARKER, name, [reason], marker=new.to_json())]
