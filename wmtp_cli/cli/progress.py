"""A rich progress display with one bar per named stage, driven by ``progress(stage, done, total[, status])`` calls."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from wmtp_cli.cli.console import console as default_console

if TYPE_CHECKING:
    from rich.console import Console


def _quiet_library_bars() -> None:
    """Turn off the libraries' own tqdm bars without importing them: importing transformers costs seconds,
    and a command that never loads a model (``wmtp eval --samples``) must not pay for it."""
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # read when datasets is imported
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # huggingface_hub's, which transformers follows
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


@contextlib.contextmanager
def stage_progress(console: Console | None = None, transient: bool = False) -> Iterator[Callable[..., None]]:
    """Yield a callback that creates a bar the first time it sees a stage and updates it after.

    The optional ``status`` (a loss, tokens/s) is shown after the bar. The libraries' own tqdm bars
    (datasets' map, transformers' weight loading) are turned off: they would interleave with these.
    Bars go to ``console`` (stdout's by default; stderr's when stdout carries data), and with
    ``transient`` they disappear when done. Nothing is drawn until the first report.
    """
    from rich import progress as rich  # imported here: `wmtp --help` draws no bar

    _quiet_library_bars()
    columns = (
        rich.TextColumn("{task.description:>14}"), rich.BarColumn(), rich.MofNCompleteColumn(),
        rich.TimeElapsedColumn(), rich.TextColumn("eta"), rich.TimeRemainingColumn(),
        rich.TextColumn("{task.fields[status]}"),
    )  # fmt: skip
    bar = rich.Progress(*columns, console=console or default_console, transient=transient)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int, status: str = "") -> None:
        if not tasks:
            bar.start()  # on the first report: a command that fails before any work draws nothing
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, status=status)
        bar.update(tasks[stage], completed=done, total=total, status=status)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
