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
SOURCE_RENAMED = "source_renamed"
"""Notice code: roles of this installation name a source under its old name."""
ORPHANED = "orphaned"
"""Notice code: enabled roles of this installation whose source is no longer configured."""
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


def renamed_ownership(desired: DesiredState, actual: ActualState, instance: str | None) -> list[Notice]:
    """Error notices for roles this installation provably made under an older name -- of
    the installation (a derived ``auto-...`` one, which follows the sources' location) or of
    a source (a marker remembers its source's name) -- which it would otherwise take for
    another installation's or another source's and never disable when their people leave.

    Proof: a login role whose marker holds the very identity (stable id) this installation's
    sources map to the role's name now, with the same source or a source no longer
    configured.  (Two installations reading one directory under different naming never
    share a role name; two configured sources that share stable ids are a conflict, not a
    rename.)"""
    if instance is None:
        return []
    moved_from: dict[str, list[str]] = {}
    renamed: dict[tuple[str, str], list[str]] = {}
    for name, user in desired.users.items():  # the roles named like a person (on a shared cluster, a few of all)
        role = actual.roles.get(name)
        m = role.marker if role is not None else None
        if role is None or m is None or m.kind is not RoleKind.USER or m.stable_id != user.stable_id:
            continue
        old_source = m.source is not None and m.source != user.source and m.source not in desired.sources
        if m.source != user.source and not old_source:
            continue
        old_instance = is_foreign(m, instance)
        if old_instance and not str(m.instance).startswith(DERIVED_PREFIX):
            continue  # a pinned name: another installation's role
        if old_instance:
            moved_from.setdefault(str(m.instance), []).append(role.name)
        if old_source:
            renamed.setdefault((str(m.source), user.source), []).append(role.name)
    out = [_instance_notice(actual, old, instance, names) for old, names in sorted(moved_from.items())]
    out += [_source_notice(actual, old, new, names) for (old, new), names in sorted(renamed.items())]
    return out + _orphans(desired, actual, instance, {old for old, _ in renamed})


def _orphans(desired: DesiredState, actual: ActualState, instance: str, renamed: set[str]) -> list[Notice]:
    """A warning naming the enabled login roles this installation made for a source that is
    no longer configured (and not renamed): nobody reads their people, so none of them is
    ever disabled as a leaver."""
    by_source: dict[str, list[str]] = {}
    for role in actual.roles.values():
        m = role.marker
        if m is None or m.instance != instance or m.kind is not RoleKind.USER or not role.login:
            continue
        if m.source is not None and m.source not in desired.sources and m.source not in renamed:
            by_source.setdefault(m.source, []).append(role.name)
    return [
        Notice(
            NoticeLevel.WARNING,
            ORPHANED,
            f"target {actual.target}: {len(names)} enabled login role(s) of this installation belong to source "
            f"{source!r}, which is not configured any more ({_shown(names)}): nobody reads their people, so none "
            "of them is disabled when they leave; configure the source again, or disable them by hand",
        )
        for source, names in sorted(by_source.items())
    ]


def _shown(names: list[str]) -> str:
    return ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")


def _instance_notice(actual: ActualState, old: str, instance: str, names: list[str]) -> Notice:
    total = sum(1 for r in actual.roles.values() if r.marker is not None and r.marker.instance == old)
    how = "derived from the sources" if instance.startswith(DERIVED_PREFIX) else "configured"
    return Notice(
        NoticeLevel.ERROR,
        INSTANCE_CHANGED,
        f"target {actual.target}: {total} role(s) are marked by installation {old!r} and hold identities "
        f"this installation reads under the same names ({_shown(names)}): they were made here before its "
        f"name changed from {old!r} to {instance!r} ({how}; a derived name changes when a source's location, "
        "name or type changes). As another installation's roles their leavers would never be disabled, so "
        f'nothing is applied: pin the old name in the configuration, [provisioner] instance = "{old}", '
        f"and run again (or, to keep {instance!r}, re-mark them: provisioner adopt-instance --target "
        f"{actual.target} --from {old} --reason ...)",
    )


def _source_notice(actual: ActualState, old: str, new: str, names: list[str]) -> Notice:
    total = sum(1 for r in actual.roles.values() if r.marker is not None and r.marker.source == old)
    return Notice(
        NoticeLevel.ERROR,
        SOURCE_RENAMED,
        f"target {actual.target}: {total} role(s) belong to source {old!r}, which is not configured any "
        f"more, and hold identities source {new!r} reads under the same names ({_shown(names)}): {new!r} is "
        f"{old!r} renamed (a managed role remembers its source's name). Their leavers would never be "
        f"disabled, so nothing is applied: name the source {old!r} again in the configuration, and run again",
    )


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


def instance_adoption(
    actual: ActualState, old: str, instance: str | None, why: str
) -> tuple[list[Change], list[str]]:
    """The changes that re-mark every role of the older *derived* installation name ``old``
    (``auto-...``: this installation before a source moved) with this installation's name,
    so that a new name can be pinned without losing the old roles; or every reason it
    cannot (nothing changes then).  A pinned name is another installation's own and is
    never taken over; superuser roles (whose comment only a superuser may write) are left."""
    if instance is None or old == instance:
        return [], [f"{old!r} is this installation's name already; nothing to adopt"]
    if not old.startswith(DERIVED_PREFIX):
        return [], [
            f"{old!r} is not a derived installation name ({DERIVED_PREFIX}...): a configured name belongs to "
            "another installation and is never taken over"
        ]
    reason = Reason("ownership:adopt", f"roles of installation {old!r} adopted by {instance!r}: {why}")
    changes = []
    for name in sorted(actual.roles):
        role = actual.roles[name]
        m = role.marker
        if m is None or m.instance != old or role.superuser:
            continue
        changes.append(
            make_change(
                ChangeKind.SET_MARKER,
                name,
                [reason],
                marker=replace(m, instance=instance).to_json(),
                before={"instance": old},
                after={"instance": instance},
            )
        )
    if not changes:
        return [], [f"target {actual.target}: no role is marked by installation {old!r}; nothing to adopt"]
    return changes, []


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
