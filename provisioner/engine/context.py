"""The run context: one run's clock, actor, trigger, reason, store and progress.

Every stage of a run takes it; it creates the run's audit events.  Planning only
returns them (``PlanOutcome.events``); the edge or ``apply_run`` hands them over with
:meth:`RunContext.hold`, and they reach the store with the next records written
(:meth:`RunContext.audit`): an apply's, before its first change; otherwise the
records the run recorder writes when the run closes (engine/record.py).
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provisioner.config import Config
from provisioner.core.governance.audit import AuditEvent, EventKind, Record
from provisioner.engine.warm import WarmState
from provisioner.store.state import StateStore

Progress = Callable[[str, int, "int | None"], None]
"""``progress(counter, advance, total)``: e.g. ("identities read", 120, None),
("changes applied", 1, 40).  Shown on a terminal by the CLI; a no-op elsewhere."""


def no_progress(counter: str, advance: int, total: int | None = None) -> None:
    """The default :data:`Progress`: report nothing."""


def never_stop() -> bool:
    return False


@dataclass(slots=True)
class RunContext:
    now: datetime
    actor: str
    trigger: str
    reason: str = ""
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    store: StateStore | None = None
    allow_mass_revocation: bool = False
    """Operator override of the breaker and health gate for this one run (needs ``reason``)."""
    progress: Progress = no_progress
    stop_requested: Callable[[], bool] = never_stop
    """Checked before each target's transaction; a stop request ends the run
    between transactions (the daemon's SIGTERM), never inside one."""
    warm: WarmState | None = None
    """The daemon's state kept between runs (engine/warm.py); None for a CLI run, which
    memoises within itself only and never skips inspect + diff on a proven no-op."""
    held: list[AuditEvent] = field(default_factory=list)
    """Records planning produced, not yet in the store (see :meth:`hold`)."""

    @property
    def short_circuit(self) -> bool:
        """A warm process (the daemon) may skip inspect + diff on a proven no-op (engine/shortcircuit.py)."""
        return self.warm is not None

    @classmethod
    def manual(cls, cfg: Config, store: StateStore | None, reason: str = "", actor: str | None = None) -> RunContext:
        who = getpass.getuser()
        return cls(datetime.now(UTC), f"{who} ({actor})" if actor else who, "manual", reason, store=store)

    def hold(self, events: Iterable[AuditEvent]) -> None:
        """Keep records for the store without writing them now: they are appended, in order,
        in front of the next records written (:meth:`audit`), at the latest by the run
        recorder when the run closes.  A run without a store (``explain``) drops them."""
        self.held.extend(events)

    def flush(self) -> None:
        """Append the records held so far now (an apply, before it executes anything)."""
        self.audit([])

    def audit(self, events: Sequence[AuditEvent | Record]) -> None:
        """Append ``events`` (or records already encoded) now, after every record held so far (one append)."""
        held, self.held = self.held, []
        if self.store is not None and (held or events):
            self.store.append([*held, *events])

    def event(self, kind: EventKind, **kw: Any) -> AuditEvent:
        """A record of this run, made now."""
        return AuditEvent(self.run_id, datetime.now(UTC), self.actor, self.trigger, kind, **kw)
