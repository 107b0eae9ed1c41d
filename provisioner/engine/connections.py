"""Opening what a run reads: every source read completely, every target opened lazily."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from types import TracebackType

from provisioner.config import Config, EntraSourceConfig
from provisioner.core.identity.groupref import referenced_groups
from provisioner.core.identity.needs import ALL, SourceNeeds
from provisioner.core.values.model import ActualState, SourceSnapshot
from provisioner.engine.context import RunContext
from provisioner.errors import (
    SourceUnavailable,
    SourceUnhealthy,
)
from provisioner.logs import log
from provisioner.sources.factory import build_source
from provisioner.targets.base import Target
from provisioner.targets.factory import build_target


def read_sources(
    cfg: Config,
    ctx: RunContext,
    referenced_groups: frozenset[str] | None = None,
    needs: SourceNeeds = ALL,
) -> tuple[SourceSnapshot, ...]:
    """Read every source completely; an empty source stops the run.

    A source that cannot be reached (:class:`SourceUnavailable`) while another one was read
    is an :func:`unreadable` snapshot: nobody of it is changed this run (none counts as
    vanished), the others are planned and applied -- a leaver of one directory is never held
    back by another one being down -- and the run then fails (:func:`raise_unread`).  When no
    source could be read, the first error stops the run.

    ``referenced_groups``: group names the rules test (Entra resolves membership for
    these only); read from the mappings when not given and a source needs them.
    ``needs``: the canonical attributes the plan depends on (default: every one)."""
    if referenced_groups is None:
        referenced_groups = _rule_groups(cfg)
    snaps = []
    unread: list[SourceUnavailable] = []
    for scfg in cfg.sources:
        memory = ctx.warm.sources if ctx.warm is not None else None  # a CLI read keeps nothing
        source = build_source(scfg, store=ctx.store, referenced_groups=referenced_groups, needs=needs, memory=memory)
        try:
            snap = source.read()
        except SourceUnavailable as exc:
            log.error("source_unavailable", source=scfg.name, error=str(exc))
            unread.append(exc)
            snaps.append(unreadable(scfg.name, exc))
            continue
        finally:
            source.close()
        if not snap.identities:
            raise SourceUnhealthy(
                f"source {scfg.name!r} returned no identities; refusing to plan "
                "(an empty directory never revokes anything)"
            )
        log.info("source_read", source=scfg.name, identities=len(snap.identities), groups=snap.group_count)
        ctx.progress("identities read", len(snap.identities), None)
        snaps.append(snap)
    if unread and len(unread) == len(snaps):
        raise unread[0]
    return tuple(snaps)


UNREADABLE = "could not be read"


def unreadable(source: str, exc: SourceUnavailable) -> SourceSnapshot:
    """The snapshot of a source that could not be reached: no identity, incomplete (nobody of
    it counts as vanished), its error an error notice in the plan."""
    error = (
        f"source {source!r} {UNREADABLE} ({exc}); nobody of it is changed this run, the other sources "
        "are planned and applied"
    )
    return SourceSnapshot(source, (), complete=False, errors=(error,))


def raise_unread(snapshots: Iterable[SourceSnapshot]) -> None:
    """After the run applied what the other sources ask for: fail it (a temporary error, so
    the daemon retries soon) naming every source that could not be read."""
    errors = [e for s in snapshots if s.unreadable for e in s.errors]
    if errors:
        raise SourceUnavailable("; ".join(errors))


def _rule_groups(cfg: Config) -> frozenset[str]:
    if not any(isinstance(s, EntraSourceConfig) for s in cfg.sources):
        return frozenset()
    from provisioner.mappings import load_mappings

    return referenced_groups(load_mappings(cfg.mappings_dir).rules)


class Targets(AbstractContextManager["Targets"]):
    """Every configured target, opened lazily and closed together."""

    def __init__(self, cfg: Config, only: set[str] | None = None, opened: Mapping[str, Target] | None = None) -> None:
        """``opened``: targets the caller built (an in-memory target a test keeps between
        runs, a wrapped one), used instead of building them from the configuration."""
        self._cfg = [t for t in cfg.targets if only is None or t.name in only]
        self._open: dict[str, Target] = {n: t for n, t in (opened or {}).items() if any(c.name == n for c in self._cfg)}

    def get(self, name: str) -> Target:
        if name not in self._open:
            tcfg = next(t for t in self._cfg if t.name == name)
            self._open[name] = build_target(tcfg)
        return self._open[name]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._cfg]

    def inspect_all(self) -> dict[str, ActualState]:
        return {name: self.get(name).inspect() for name in self.names}

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        for target in self._open.values():
            target.close()
        self._open.clear()
