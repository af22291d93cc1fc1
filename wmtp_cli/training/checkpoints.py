"""Training checkpoints: written whole or not at all, the last K kept, the latest found on resume.

A checkpoint is ``<run>/checkpoints/step-<N>/``: accelerate's ``save_state`` (model and critic
weights, optimizer, scheduler, every process's RNG state) and ``trainer_state.json`` (the step; the
data position follows from it, see :mod:`wmtp_cli.training.data`). It is written under a temporary
name and renamed once complete, so a run killed while saving leaves the previous checkpoint as the
latest.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of the run, oldest first."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def save_checkpoint(accelerator, run_dir: Path, step: int, keep_last: int, state: dict[str, Any]) -> Path:
    """Save the prepared objects and ``state`` as checkpoint ``step``; every process must call it."""
    final = run_dir / CHECKPOINTS / f"step-{step:08d}"
    tmp = run_dir / CHECKPOINTS / f".step-{step:08d}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in checkpoint_dirs(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> dict[str, Any]:
    """Restore the prepared objects from ``path``; returns its ``trainer_state.json``."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())


def remove_partial(run_dir: Path) -> None:
    """Delete what a run killed while saving left behind."""
    folder = run_dir / CHECKPOINTS
    if folder.is_dir():
        for partial in folder.glob(".step-*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
