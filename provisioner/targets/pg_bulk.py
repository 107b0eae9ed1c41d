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

Only plain memberships merge: a ``REVOKE ... GRANTED BY`` (PostgreSQL 16) keeps
its own statements.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from psycopg import sql

from provisioner.targets.pg_step import Step

MAX_MEMBERS_PER_ROUND_TRIP = 5000
"""Membership changes sent in one round trip at most (bounds one merged statement)."""

_VERB = {"GRANT": (sql.SQL("GRANT "), sql.SQL(" TO ")), "REVOKE": (sql.SQL("REVOKE "), sql.SQL(" FROM "))}
_COMMA = sql.SQL(", ")


def by_group(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with each run of consecutive membership changes of one verb
    ordered by group role (stable), so that a round trip holds few group roles.

    Safe: such changes depend only on roles created before the run (a plan
    creates roles first), not on each other.  Callers keep the original order
    for reporting and auditing."""
    out: list[Step] = []
    run: list[Step] = []
    for step in steps:
        if run and (step.merge is None or step.merge[0] != run[0].merge[0]):  # type: ignore[index]
            out += sorted(run, key=_group_of) if len(run) > 1 else run
            run = []
        if step.merge is None:
            out.append(step)
        else:
            run.append(step)
    out += sorted(run, key=_group_of) if len(run) > 1 else run
    return out


def _group_of(step: Step) -> str:
    return step.merge[1] if step.merge is not None else ""


def bulk_batches(
    steps: Sequence[Step], size: int, max_members: int = MAX_MEMBERS_PER_ROUND_TRIP
) -> Iterator[Sequence[Step]]:
    """Consecutive runs of steps that need at most ``size`` statements once
    memberships are merged (and hold at most ``max_members`` mergeable changes);
    a step is never split, a step larger than ``size`` forms its own batch."""
    start, cost, members = 0, 0, 0
    keys: set[tuple[str, str]] = set()
    for i, step in enumerate(steps):
        key = step.merge
        extra = len(step.statements) - 1  # a membership step's ledger statement(s) (issue 13)
        n = (0 if key in keys else 1) + extra if key is not None else len(step.statements)
        if cost and (cost + n > size or (key is not None and members >= max_members)):
            yield steps[start:i]
            start, cost, members = i, 0, 0
            keys = set()
            n = 1 + extra if key is not None else len(step.statements)
        cost += n
        if key is not None:
            keys.add(key)
            members += 1
    if start < len(steps):
        yield steps[start:]


def merged_statements(batch: Sequence[Step]) -> list[sql.Composable]:
    """The batch's statements in order, the membership changes of each
    ``(verb, group)`` merged into one statement at the place of the last one."""
    members: dict[tuple[str, str], list[str]] = {}
    last: dict[tuple[str, str], int] = {}
    for i, step in enumerate(batch):
        if step.merge is not None:
            members.setdefault(step.merge, []).append(step.change.role)
            last[step.merge] = i
    if all(len(m) == 1 for m in members.values()):
        return [s for step in batch for s in step.statements]
    out: list[sql.Composable] = []
    for i, step in enumerate(batch):
        key = step.merge
        if key is None:
            out.extend(step.statements)
            continue
        # The membership statement merges; what follows it in the step (the member's marker
        # with its membership ledger, issue 13) stays at the step's place, in order, so each
        # role's last ledger written is the one the plan wrote last.
        out.extend(step.statements[1:])
        if last[key] == i:
            out.append(_statement(key, members[key]))
    return out


def _statement(key: tuple[str, str], roles: list[str]) -> sql.Composable:
    verb, group = key
    head, link = _VERB[verb]
    names = _COMMA.join([sql.Identifier(r) for r in dict.fromkeys(roles)])
    return sql.Composed([head, sql.Identifier(group), link, names])
