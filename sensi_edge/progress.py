"""Progress bars for our own long loops (the Trainer draws its own)."""
from __future__ import annotations

import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def track(items, desc: str):
    items = list(items)
    if not sys.stderr.isatty() and len(items) < 2:
        yield from items
        return
    from rich.console import Console

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        yield from progress.track(items, description=desc)
