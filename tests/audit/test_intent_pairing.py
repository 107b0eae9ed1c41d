"""Each apply_completed closes its own intent: a run applies a target in two
transactions (removals first, then the rest), so a crash in the second one must
leave that one unresolved even though the first completed (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from provisioner.core.governance.audit import AuditEvent, EventKind
from provisioner.store.state import StateStore


def _event(kind: EventKind, run: str, target: str, **after: object) -> AuditEvent:
    return AuditEvent(run, datetime.now(UTC), "pytest", "manual", kind, target=target, after=dict(after))


def test_a_completion_closes_only_the_latest_open_intent(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.append([_event(EventKind.APPLY_INTENT, "r1", "pg", changes=[])])  # removals
        store.append([_event(EventKind.APPLY_COMPLETED, "r1", "pg", intended=1, committed=1)])
        second = store.append([_event(EventKind.APPLY_INTENT, "r1", "pg", changes=[{"role": "x"}])])  # crashed
        store.append([_event(EventKind.APPLY_INTENT, "r1", "maria", changes=[])])
        store.append([_event(EventKind.APPLY_COMPLETED, "r1", "maria", intended=0, committed=0)])
        (left,) = store.audit.unresolved_intents(0)
        assert left.seq == second[0].seq
        assert left.content["after"]["changes"] == [{"role": "x"}], "the open intent is read whole"
        assert left.hash == second[0].hash
        # recovery's completion names the intent it closes
        store.append([_event(EventKind.APPLY_COMPLETED, "r1", "pg", recovered=True, intent_seq=second[0].seq)])
        assert store.audit.unresolved_intents(0) == []
    finally:
        store.close()
