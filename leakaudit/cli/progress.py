"""Progress bars on stderr: the scan's (samples/s, ETA) and validate's (scoring, attacking)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from leakaudit.api import ProgressFn
from leakaudit.cli.console import stderr_console


class RateColumn(ProgressColumn):
    """Samples per second, from rich's moving estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} samples/s")


@contextmanager
def scan_progress(enabled: bool) -> Iterator[ProgressFn | None]:
    """A ``progress(done, total)`` callback that drives a bar, or ``None`` when disabled."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=False,
    )
    task = bar.add_task("scan", total=None)
    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if not started:  # start on the first report, after loading; resumed samples
            bar.start()  # do not count towards the rate
            bar.reset(task, completed=done, total=total)
            started = True
        else:
            bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if started:
            bar.stop()


@contextmanager
def validate_progress(
    enabled: bool, scoring: bool
) -> Iterator[tuple[ProgressFn | None, ProgressFn | None]]:
    """``(scoring, attacking)`` progress callbacks driving one rich display on stderr."""
    if not enabled:
        yield None, None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
    )
    score_task = bar.add_task("scoring samples", total=None, visible=scoring)
    attack_task = bar.add_task("attack iterations", total=None)
    with bar:
        yield (
            lambda done, total: bar.update(score_task, completed=done, total=total),
            lambda done, total: bar.update(attack_task, completed=done, total=total),
        )
