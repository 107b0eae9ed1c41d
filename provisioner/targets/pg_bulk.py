"""Multi-member membership statements: ``GRANT g TO a, b, c``.

A first sync of a realistic directory is mostly memberships (every person in
``readers``, a department role and a dozen group roles); one statement per
membership is most of the SQL sent.  Consecutive membership changes are ordered
by group role (:func:`by_group`), and within one round trip the changes of one
group role are sent as one statement naming every member, placed where the last
of them stood (they depend only on roles created earlier).  Each change
keeps its own :class:`~provisioner.targets.pg_apply.Step` (and so its audit
record); when a merged round trip fails, :class:`BatchRunner` replays the batch
one change at a time, exactly as without merging, to name the change that failed.

Each membership step also writes its member's marker with the ledger after it
(issue 13), a ``COMMENT ON ROLE`` per change.  Within one round trip (atomic: it
commits under its savepoint as a whole or is replayed step by step) only the last
of a member's consecutive ledger statements can be seen afterwards, so the earlier
ones are not sent (:func:`merged_statements`), and a run of such steps is ordered by
member instead of by group (:func:`by_group`): one ledger statement per member and
round trip, the group statements shared by members with similar groups.

Only plain memberships merge: a ``REVOKE ... GRANTED BY`` (PostgreSQL 16) keeps
its own statements.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from psycopg import sql

from provisioner.targets.pg_step import Part, Statement, Step

MAX_MEMBERS_PER_ROUND_TRIP = 5000
"""Membership changes sent in one round trip at most (bounds one merged statement)."""

_VERB = {"GRANT": (b"GRANT ", b" TO "), "REVOKE": (b"REVOKE ", b" FROM ")}
_COMMA = b", "


def by_group(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with each run of consecutive membership changes of one verb
    reordered so that a round trip needs few statements: without ledger statements
    by group role (stable); with them by member (:func:`_by_member`).

    Safe: such changes depend only on roles created before the run (a plan
    creates roles first), not on each other; one member's changes keep their
    order (each carries the ledger after it).  Callers keep the original order
    for reporting and auditing."""
    out: list[Step] = []
    run: list[Step] = []
    for step in steps:
        if run and (step.merge is None or step.merge[0] != run[0].merge[0]):  # type: ignore[index]
            out += _ordered(run)
            run = []
        if step.merge is None:
            out.append(step)
        else:
            run.append(step)
    out += _ordered(run)
    return out


def _ordered(run: list[Step]) -> list[Step]:
    if len(run) < 2:
        return run
    if any(step.ledger is not None for step in run):
        return _by_member(run)
    return sorted(run, key=_group_of)


def _by_member(run: list[Step]) -> list[Step]:
    """Each member's steps together and in their order, members with similar groups
    next to each other (their groups listed rarest first, so that members of the same
    small groups share a round trip and its group statements)."""
    mine: dict[str, list[Step]] = {}
    popularity: dict[str, int] = {}
    for step in run:
        mine.setdefault(step.change.role, []).append(step)
        group = _group_of(step)
        popularity[group] = popularity.get(group, 0) + 1

    def key(role: str) -> tuple[tuple[tuple[int, str], ...], str]:
        return tuple(sorted((popularity[g], g) for g in {_group_of(s) for s in mine[role]})), role

    return [step for role in sorted(mine, key=key) for step in mine[role]]


def _group_of(step: Step) -> str:
    return step.merge[1] if step.merge is not None else ""


def bulk_batches(
    steps: Sequence[Step], size: int, max_members: int = MAX_MEMBERS_PER_ROUND_TRIP
) -> Iterator[Sequence[Step]]:
    """Consecutive runs of steps that need at most ``size`` statements once
    memberships are merged and superseded ledger statements left out (exactly
    what :func:`merged_statements` sends), and hold at most ``max_members``
    mergeable changes; a step is never split, a step larger than ``size`` forms
    its own batch."""
    start, cost, members = 0, 0, 0
    keys: set[tuple[str, str]] = set()
    ledgered: set[str] = set()
    for i, step in enumerate(steps):
        n = _cost(step, keys, ledgered)
        if cost and (cost + n > size or (step.merge is not None and members >= max_members)):
            yield steps[start:i]
            start, cost, members = i, 0, 0
            keys, ledgered = set(), set()
            n = _cost(step, keys, ledgered)
        cost += n
        _count(step, keys, ledgered)
        if step.merge is not None:
            members += 1
    if start < len(steps):
        yield steps[start:]


def _cost(step: Step, keys: set[tuple[str, str]], ledgered: set[str]) -> int:
    """Statements ``step`` adds to a round trip holding ``keys`` and ``ledgered``."""
    if step.merge is None:
        return step.size
    ledger = 0 if step.ledger is None else 1  # the member's marker with its ledger (issue 13)
    return (0 if step.merge in keys else 1) + (0 if ledger and step.change.role in ledgered else ledger)


def _count(step: Step, keys: set[tuple[str, str]], ledgered: set[str]) -> None:
    if step.merge is None:
        ledgered.difference_update(_roles(step))
        return
    keys.add(step.merge)
    if step.ledger is not None:
        ledgered.add(step.change.role)


def _roles(step: Step) -> tuple[str, ...]:
    """The roles a step names (a rename names its old name too)."""
    old = step.change.param("old_name")
    return (step.change.role, old) if isinstance(old, str) else (step.change.role,)


def merged_statements(batch: Sequence[Step]) -> list[sql.Composable]:
    """The batch's statements in order, the membership changes of each
    ``(verb, group)`` merged into one statement at the place of the last one,
    and a member's ledger statement left out where a later membership step of
    the batch writes the member's ledger again with no other step of that
    role in between (the batch commits as a whole, so only the last can be seen)."""
    members: dict[tuple[str, str], list[str]] = {}
    last: dict[tuple[str, str], int] = {}
    superseded: set[int] = set()
    later: set[str] = set()  # members whose ledger a later step of this batch writes
    for i in range(len(batch) - 1, -1, -1):
        step = batch[i]
        if step.merge is None:
            later.difference_update(_roles(step))
            continue
        members.setdefault(step.merge, []).append(step.change.role)
        last.setdefault(step.merge, i)
        if step.ledger is not None:
            if step.change.role in later:
                superseded.add(i)
            later.add(step.change.role)
    if not superseded and all(len(m) == 1 for m in members.values()):
        return [s for step in batch for s in step.statements]
    out: list[sql.Composable] = []
    for i, step in enumerate(batch):
        key = step.merge
        if key is None:
            out.extend(step.statements)
            continue
        # The membership statement (a mergeable step's only own statement) merges; the member's
        # marker with its membership ledger (issue 13) stays at the step's place, in order, so
        # each role's last ledger written is the one the plan wrote last; it is composed only
        # here, when sent.
        if step.ledger is not None and i not in superseded:
            out.append(step.ledger_statement())
        if last[key] == i:
            out.append(_statement(key, members[key][::-1]))
    return out


def _statement(key: tuple[str, str], roles: list[str]) -> sql.Composable:
    verb, group = key
    head, link = _VERB[verb]
    parts: list[Part] = [head, group, link]
    for role in dict.fromkeys(roles):
        parts += (role, _COMMA)
    parts.pop()
    return Statement(*parts)
