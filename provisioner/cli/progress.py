"""Progress of long syncs on a terminal (identities read, changes applied).

``terminal_progress(ctx)`` sets ``ctx.progress`` to a rich progress display when
stderr is a terminal, and leaves the no-op default otherwise (logs, daemon, CI).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from provisioner.engine.context import RunContext


class _Rich:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, counter: str, advance: int, total: int | None = None) -> None:
        task = self._tasks.get(counter)
        if task is None:
            task = self._tasks[counter] = self._progress.add_task(counter, total=total)
        self._progress.update(task, advance=advance, total=total)


@contextmanager
def terminal_progress(ctx: RunContext) -> Iterator[None]:
    if not sys.stderr.isatty():
        yield
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        ctx.progress = _Rich(progress)
        yield
