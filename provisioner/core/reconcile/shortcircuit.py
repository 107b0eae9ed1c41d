"""Whether a warm process may skip inspecting and diffing the targets (issue 9).

Pure: the shell gathers the facts of this run and of the last full run; this
module only decides.  Every condition must hold, otherwise the normal path runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What one run knows before inspecting any target."""

    at: datetime
    sources_unchanged: bool
    """Every source returned the very snapshot the last run planned from."""
    mappings_digest: str
    config_digest: str
    catalog_digests: Mapping[str, str | None]
    """Per target, the server-side digest of its managed catalog (None: cannot tell)."""
    day: date | None = None
    """The date in ``[lifecycle] timezone``: the rules' ``today`` and SoD exception expiry."""


@dataclass(frozen=True, slots=True)
class Verified:
    """The last full run whose plan was empty, as the short-circuit needs it."""

    facts: RunFacts
    lifecycle_instants: tuple[datetime, ...]
    quiet_targets: frozenset[str]
    """Targets whose plan had no change, with no break-glass
    accounts, no drop failures, no retention drops and no vanished identities being counted."""


def decide(last: Verified | None, now: RunFacts, targets: frozenset[str]) -> str:
    """``""`` when the run may short-circuit, else why it may not."""
    why = precheck(last, now, targets)
    if why or last is None:
        return why or "no earlier run in this process"
    for name in sorted(targets):
        digest = now.catalog_digests.get(name)
        if digest is None or digest != last.facts.catalog_digests.get(name):
            return f"target {name!r} catalog changed"
    return ""


def precheck(last: Verified | None, now: RunFacts, targets: frozenset[str]) -> str:
    """Every condition but the catalog digests (the one that costs a query)."""
    if last is None:
        return "no earlier run in this process"
    before = last.facts
    if not now.sources_unchanged:
        return "a source returned a new snapshot"
    if now.mappings_digest != before.mappings_digest:
        return "mappings changed"
    if now.config_digest != before.config_digest:
        return "configuration changed"
    if now.at.date() != before.at.date() or now.at < before.at:
        return "the UTC date changed"
    if now.day != before.day:
        return "the date in [lifecycle] timezone changed"
    if any(before.at < instant <= now.at for instant in last.lifecycle_instants):
        return "a lifecycle instant passed"
    if not targets or not targets <= last.quiet_targets:
        return "a target had work, drop failures, retention or break-glass accounts"
    return ""
