"""What both training stages share: the accelerator, metric logs and their trackers, and the finite-loss guard."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from wmtp_cli import trackers as tracking
from wmtp_cli.errors import RunError, UsageError


def resolve_mixed_precision(setting: str) -> str | None:
    """accelerate's ``mixed_precision`` for ``run.mixed_precision``; None defers to ``accelerate launch``."""
    if setting != "auto":
        return setting
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_accelerator(
    mixed_precision: str, grad_accum: int = 1, report_to: Sequence[str] = (), run_dir: Path | None = None
):
    """An ``Accelerator`` for this process: DDP/FSDP/DeepSpeed as ``accelerate launch`` set up, else one device.

    ``report_to`` (``run.report_to``) names the trackers; their files (TensorBoard's, Aim's) go under
    ``<run_dir>/trackers``. A tracker that is not installed is refused here, before any model loads.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

    log_with = tracking.chosen(list(report_to))
    tracking.require_installed(log_with)
    project = None
    if run_dir is not None:
        project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / tracking.FOLDER))

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        # accelerate keeps one global state per process and refuses a second Accelerator with other settings;
        # a single process that runs several stages in turn (the demo, tests) starts each from a clean state.
        AcceleratorState._reset_state(reset_partial_state=True)
    plugin = GradientAccumulationPlugin(num_steps=grad_accum, sync_with_dataloader=False)
    try:
        return Accelerator(
            mixed_precision=resolve_mixed_precision(mixed_precision),
            gradient_accumulation_plugin=plugin,
            cpu=not torch.cuda.is_available(),
            log_with=log_with or None,
            project_config=project,
        )
    except ValueError as exc:  # e.g. bf16 asked for on hardware without it
        raise UsageError(f"cannot set up training: {exc}") from None


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def require_finite(checks: dict[str, tuple[float, str]], step: int, what_is_left: str) -> None:
    """Stop the run with one clear line when a checked quantity is NaN or infinite.

    ``checks`` maps what was checked (``"the critic's values"``, ``"the LM loss"``) to its value and the
    settings that can make it non-finite, in causal order: the first non-finite one is where it began
    (NaN values make NaN weights make a NaN loss), so its causes are the advice; the rest are named.
    """
    bad = [(what, value, causes) for what, (value, causes) in checks.items() if not math.isfinite(value)]
    if bad:
        first, value, causes = bad[0]
        later = f" (and so {', '.join(what for what, _, _ in bad[1:])})" if len(bad) > 1 else ""
        raise RunError(
            f"{first} became {value} at step {step}{later}: stopped before the optimiser step. {what_is_left} "
            f"Likely causes: {causes}."
        )


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """The records a :class:`MetricsLog` wrote in ``folder`` (none when it has no log)."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Trackers:
    """accelerate's trackers of one run (``run.report_to``), started with the resolved recipe as their config.

    Only the main process has trackers (accelerate starts them there); on the others this does nothing.
    """

    def __init__(self, accelerator, settings: dict[str, dict[str, Any]], run_name: str, resume_step: int | None):
        self.accelerator = accelerator
        if accelerator.log_with:
            accelerator.init_trackers(tracking.PROJECT, config=tracking.flat_config(settings),
                                      init_kwargs=tracking.init_kwargs(run_name, resume_step))  # fmt: skip

    def log(self, values: dict[str, float], step: int) -> None:
        self.accelerator.log(values, step=step)

    def finish(self) -> None:
        """Close every tracker once (flushing TensorBoard's files, ending the W&B run).

        Not ``accelerator.end_training()``: it also destroys the process group, which the stage's final save
        and a later stage in the same processes (the demo) still use.
        """
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers.clear()


class MetricsLog:
    """Appends one JSON line per record to ``metrics.jsonl``, the source of truth, and hands the same numbers
    (each record's numeric values at its ``step``) to the run's :class:`Trackers`.

    Only the main process writes; the others get a log that drops everything.
    """

    def __init__(
        self, folder: Path, enabled: bool = True, resume_step: int | None = None, trackers: Trackers | None = None
    ):
        self.enabled = enabled
        self.path = folder / "metrics.jsonl"
        self.trackers = trackers
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # A resumed run rewrites what the killed run logged after its last checkpoint.
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.trackers is not None:
            numbers = {
                key: value for key, value in record.items()
                if key not in ("step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool)
            }  # fmt: skip
            self.trackers.log(numbers, step=record.get("step", 0))

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.finish()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0
