"""Warm state: what a long-running process keeps between runs, as one explicit object.

The daemon creates one :class:`WarmState` and passes it into every run it starts;
the CLI passes none, so a CLI run memoises within itself only and never
short-circuits (true by construction, not by a flag).  Nothing here is a process
global: dropping the object drops everything it kept.

- ``grants``: the rules' grants per identity content (core/identity/memo.py);
- ``diffs``: per target, what the last diff planned per person (core/reconcile/diffmemo.py);
- ``fingerprints``: the scope-independent part of each target's plan fingerprint, while the
  target's roles are the very same object (a reused actual state; core/values/model.py);
- ``rows``: per target, the roles its last inspect built (targets/base.py ``RoleRows``):
  an unchanged role is the very same object after a fresh inspect, so the diff memo
  still reuses per person when something else in the catalog changed;
- ``scripts``: the Unicode data naming needs (read from the installed packages once, not
  on every run: ~0.3-0.5 s of JSON decoding);
- ``last``: the last full run of the current configuration, the short-circuit's
  evidence (engine/shortcircuit.py);
- ``sources``: what the source readers keep between reads (the incremental LDAP reader's
  snapshot generation, normalised DNs; sources/memory.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner import unicode_data
from provisioner.core.identity.memo import GrantMemo
from provisioner.core.identity.naming import Scripts
from provisioner.core.reconcile.diffmemo import DiffMemo
from provisioner.core.reconcile.shortcircuit import Verified
from provisioner.core.values.model import ActualState, DesiredState, FingerprintMemo, SourceSnapshot
from provisioner.core.values.plan import Plan
from provisioner.sources.memory import SourceMemory
from provisioner.targets.base import RoleRows


@dataclass(frozen=True, slots=True)
class LastRun:
    """The last full run of one configuration (``config_digest``)."""

    config_digest: str
    verified: Verified
    snapshots: tuple[SourceSnapshot, ...]
    desired: DesiredState
    actual: Mapping[str, ActualState]
    plan: Plan
    """Its plan without the changes (fingerprints, notices, sources, run id)."""


@dataclass(slots=True, eq=False)
class WarmState:
    """Owned by the daemon; one per process, passed into each run (see the module docstring)."""

    grants: GrantMemo = field(default_factory=GrantMemo)
    diffs: DiffMemo = field(default_factory=DiffMemo)
    fingerprints: FingerprintMemo = field(default_factory=FingerprintMemo)
    rows: dict[str, RoleRows] = field(default_factory=dict)
    scripts: Scripts | None = None
    last: LastRun | None = None
    sources: SourceMemory = field(default_factory=SourceMemory)

    def last_of(self, config_digest: str) -> LastRun | None:
        """The last full run, if it was made with this configuration (a reload forgets it)."""
        last = self.last
        return last if last is not None and last.config_digest == config_digest else None

    def unicode(self) -> Scripts:
        """The naming's Unicode data, read on the first run."""
        if self.scripts is None:
            self.scripts = unicode_data.scripts()
        return self.scripts

    def rows_of(self, target: str) -> RoleRows:
        return self.rows.setdefault(target, {})

    def forget(self) -> None:
        self.last = None
