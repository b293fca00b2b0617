"""The rich progress bar of long runs, or nothing when it is switched off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    enabled: bool, total: int, description: str, completed: int = 0
) -> Iterator[Callable[..., None]]:
    """``with progress_bar(enabled, total, "what") as advance: advance(n)``.

    Parameters
    ----------
    enabled
        Show the bar; otherwise ``advance`` does nothing.
    total
        Number of steps.
    description
        Label in front of the bar.
    completed
        Steps already done (a resumed run).
    """
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Steps per second, or seconds per step for slow steps."""

        def render(self, task: object) -> Text:
            return Text(rate_text(getattr(task, "speed", None)), style="progress.data.speed")

    columns = (
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        RateColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n=1: bar.advance(task, n)


def rate_text(speed: float | None) -> str:
    """A progress bar's rate: steps per second, or seconds per step below one a second."""
    if not speed:
        return "-/s"
    if speed >= 10:
        return f"{speed:,.0f}/s"
    if speed >= 1:
        return f"{speed:.1f}/s"
    seconds = 1.0 / speed
    return f"{seconds:.1f} s/step" if seconds < 100 else f"{seconds / 60:.0f} min/step"
