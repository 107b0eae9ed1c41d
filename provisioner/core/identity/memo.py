"""Memoised grants: what the rules give an identity depends only on the parts of
it the rules read (the attributes their conditions test and their grants expand,
the groups they name, the username when a grant expands ``{username}``) and on
the day (``before`` / ``after`` conditions).  Many identities share those parts
(same department, title and type), so one evaluation serves all of them; the
daemon keeps a :class:`GrantMemo` across runs, so unchanged people cost a lookup.

Pure: no I/O, a memo is a plain dictionary the shell may keep or drop.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date, datetime

from provisioner.core.identity.conditions import Evidence
from provisioner.core.identity.grouptemplate import LabelNames
from provisioner.core.identity.naming import NamingPolicy, Scripts, role_name
from provisioner.core.identity.reads import rule_reads
from provisioner.core.identity.rules import Grant, RuleSet
from provisioner.core.values.model import DesiredUser, Identity, Lifecycle, Reason

Classified = tuple[Lifecycle, Reason, datetime | None]
MAX_ENTRIES = 500_000
"""The memo starts afresh beyond this many distinct keys (bounded memory)."""


@dataclass(frozen=True, slots=True)
class RuleInputs:
    """What of an identity a rule set reads."""

    attributes: tuple[str, ...]
    groups: frozenset[str]
    username: bool
    all_groups: bool = False
    """A rule expands ``{group}``: every group of the identity matters."""


def rule_inputs(rules: RuleSet) -> RuleInputs:
    reads = rule_reads(rules)  # the one "what the rules read" (core/identity/reads.py)
    return RuleInputs(tuple(sorted(reads.attributes)), reads.groups, reads.username, reads.all_groups)


class GrantMemo:
    """``rules.grants_for(ident, today)`` memoised on :class:`RuleInputs` of ``ident``.

    Valid for one rule set and one day: either changing empties it.  Also, per
    identity *object* (a warm incremental read hands back the very same frozen
    identities for unchanged people), the role name and the whole desired user of
    the last call: an unchanged person with the same name and lifecycle state gets
    the same :class:`DesiredUser` without evaluating anything.  Only the last
    call's identities are held."""

    def __init__(self) -> None:
        self._rules: RuleSet | None = None
        self._today: date | None = None
        self._inputs = RuleInputs((), frozenset(), False)
        self._memo: dict[Hashable, tuple[Grant, ...]] = {}
        self._labels: LabelNames = {}
        """Group label -> RDN value and normalised name, for ``{group}`` templates."""
        self._reasons: dict[tuple[str, Evidence], Reason] = {}
        """Rule id and evidence -> the reason (one object for every identity with that evidence)."""
        self._singles: dict[int, tuple[Reason]] = {}
        """A reason's address -> ``(reason,)``: see :meth:`single`."""
        self._users: dict[int, tuple[Identity, str, Classified, DesiredUser]] = {}
        self._users_next: dict[int, tuple[Identity, str, Classified, DesiredUser]] = {}
        self._names: dict[int, tuple[Identity, NamingPolicy, str | None]] = {}
        self._names_next: dict[int, tuple[Identity, NamingPolicy, str | None]] = {}
        self._skeletons: dict[str, str] = {}
        self._skeletons_next: dict[str, str] = {}
        self._scripts: Scripts | None = None
        """What the kept skeletons were computed with (another one starts afresh)."""
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memo)

    def _reset(self, rules: RuleSet, today: date) -> None:
        self._rules, self._today = rules, today
        self._inputs = rule_inputs(rules)
        self._memo = {}
        self._users = {}
        self._reasons = {}
        self._singles = {}

    def begin(self, rules: RuleSet, today: date) -> None:
        """Start a desired-state computation (empties the memo for other rules or another day)."""
        if today != self._today or (rules is not self._rules and rules != self._rules):
            self._reset(rules, today)
        self._users_next, self._names_next, self._skeletons_next = {}, {}, {}

    def end(self) -> None:
        """Keep what this computation built for the next one, and only that."""
        self._users, self._users_next = self._users_next, {}
        self._names, self._names_next = self._names_next, {}
        self._skeletons, self._skeletons_next = self._skeletons_next, {}

    def name_of(self, policy: NamingPolicy) -> Callable[[Identity], str | None]:
        last, built = self._names, self._names_next

        def name(ident: Identity) -> str | None:
            hit = last.get(id(ident))
            value = hit[2] if hit is not None and hit[0] is ident and hit[1] == policy else role_name(ident, policy)
            built[id(ident)] = (ident, policy, value)
            return value

        return name

    def skeleton_of(self, scripts: Scripts) -> Callable[[str], str]:
        """``scripts.skeleton`` memoised per role name (a pure function of the name and the
        Unicode data): only this computation's names are kept for the next one."""
        if scripts is not self._scripts:
            self._scripts, self._skeletons = scripts, {}
        last, built, compute = self._skeletons, self._skeletons_next, scripts.skeleton

        def skeleton(name: str) -> str:
            value = last.get(name)
            if value is None:
                value = compute(name)
            built[name] = value
            return value

        return skeleton

    def user(self, ident: Identity, name: str, classified: Classified) -> DesiredUser | None:
        hit = self._users.get(id(ident))
        if hit is not None and hit[0] is ident and hit[1] == name and hit[2] == classified:
            return hit[3]
        return None

    def keep(self, ident: Identity, name: str, classified: Classified, user: DesiredUser) -> None:
        self._users_next[id(ident)] = (ident, name, classified, user)

    def single(self, reason: Reason) -> tuple[Reason]:
        """``(reason,)``, one tuple per reason: a membership one rule gives is the usual case,
        and each person's memberships, kept by the daemon, would hold a tuple of their own
        (235,000 of them at 50,000 people, 11 MB).  The tuple keeps its reason alive, so while
        it is in the table its address names no other object."""
        hit = self._singles.get(id(reason))
        if hit is None:
            hit = self._singles[id(reason)] = (reason,)
        return hit

    def grants(self, rules: RuleSet, ident: Identity, today: date) -> tuple[Grant, ...]:
        if today != self._today or (rules is not self._rules and rules != self._rules):
            self._reset(rules, today)
        inputs = self._inputs
        get = ident.attributes.get
        groups = ident.groups
        # the groups part costs what the identity's groups cost, not what the rules name
        key = (
            tuple([get(a, ()) for a in inputs.attributes]),
            groups if inputs.all_groups else groups.intersection(inputs.groups),
            ident.username if inputs.username else None,
        )
        found = self._memo.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        if len(self._memo) >= MAX_ENTRIES:
            self._memo = {}
        if len(self._labels) >= MAX_ENTRIES:
            self._labels = {}
        if len(self._reasons) >= MAX_ENTRIES:
            self._reasons = {}
            self._singles = {}
        grants = tuple(rules.grants_for(ident, today, self._labels, self._reasons))
        self._memo[key] = grants
        return grants
