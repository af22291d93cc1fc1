"""Training checkpoints: sharded, written whole or not at all, readable by any number of processes.

A checkpoint is ``<run>/checkpoints/step-<N>/``:

- the model (and critic) weights and the optimizer state through :mod:`torch.distributed.checkpoint`
  (DCP): every process writes its own shards (``__<rank>_0.distcp``) beside one ``.metadata`` file, and
  nothing is gathered into one process. Tensors are keyed by parameter name, which is the same under
  one process, DDP and FSDP2, so a checkpoint loads into another strategy and another number of
  processes than wrote it (DCP reshards on load: 2 processes write, 1 resumes, or the reverse);
- ``scheduler.pt`` (the learning-rate schedule), ``rng-<rank>.pt`` (each process's random states,
  restored when the number of processes is unchanged);
- ``trainer_state.json``: the step, what wrote it (the run's fingerprint and global batch, checked on
  resume) and the completion marker: it is written last, once every process has finished, and the
  folder is renamed from ``.step-<N>.partial`` only then. A folder without it is a run killed while
  saving; ``--resume`` ignores it with a notice.

The data position is a function of the step (:mod:`wmtp_cli.training.data`).
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmtp_cli.errors import UsageError

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
SCHEDULER_FILE = "scheduler.pt"
_NAME = re.compile(r"^step-(\d+)$")
_PARTIAL = re.compile(r"^\.step-(\d+)\.partial$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of the run, oldest first."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders without their completion marker: what a run killed while saving left behind."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir()
             if _PARTIAL.match(p.name) or (_NAME.match(p.name) and not (p / STATE_FILE).is_file())]  # fmt: skip
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def _raw_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the real one


def _dcp_options() -> dict[str, Any]:
    import torch.distributed as dist

    return {"no_dist": not (dist.is_available() and dist.is_initialized())}


@contextmanager
def _quiet_without_process_group() -> Iterator[None]:
    """DCP warns that it assumes one process when there is no process group: that is what one process means."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def save_checkpoint(
    accelerator, run_dir: Path, step: int, keep_last: int, module, optimizer, scheduler, state: dict[str, Any]
) -> Path:
    """Save ``module`` (any strategy), ``optimizer``, ``scheduler``, the RNG and ``state`` as checkpoint
    ``step``; every process must call it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = run_dir / CHECKPOINTS / f"step-{step:08d}"
    tmp = run_dir / CHECKPOINTS / f".step-{step:08d}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    model_state, optimizer_state = get_state_dict(module, _raw_optimizer(optimizer))
    with _quiet_without_process_group():
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(tmp), **_dcp_options())
    torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        record = {"step": step, "world_size": accelerator.num_processes, **state}
        (tmp / STATE_FILE).write_text(json.dumps(record, indent=2) + "\n")  # the completion marker, last
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in checkpoint_dirs(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's ``trainer_state.json``."""
    return json.loads((path / STATE_FILE).read_text())


def load_checkpoint(accelerator, path: Path, module, optimizer, scheduler) -> dict[str, Any]:
    """Restore ``module``, ``optimizer`` and ``scheduler`` from ``path``, resharded to this run's processes;
    returns its ``trainer_state.json``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    raw = _raw_optimizer(optimizer)
    model_state, optimizer_state = get_state_dict(module, raw)  # templates: this run's shapes and shards
    loaded = {"model": model_state, "optimizer": optimizer_state}
    with _quiet_without_process_group():
        dcp.load(loaded, checkpoint_id=str(path), **_dcp_options())
    set_state_dict(module, raw, model_state_dict=loaded["model"], optim_state_dict=loaded["optimizer"])
    scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=False))
    record = read_state(path)
    rng = path / f"rng-{accelerator.process_index}.pt"
    if record.get("world_size") == accelerator.num_processes and rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=False))
    else:
        logger.info("%s was written by %s process(es): random states not restored", path, record.get("world_size"))
    return record


def check_same_run(path: Path, fingerprint: dict[str, Any], global_batch: int) -> None:
    """Refuse to resume from a checkpoint that another kind of run wrote (model shape, weighting, LoRA) or
    with another global batch (the data position and the loss normalisation follow from it)."""
    record = read_state(path)
    theirs = record.get("fingerprint", {})
    different = [f"{key} {theirs.get(key)!r} there, {value!r} here" for key, value in fingerprint.items()
                 if key in theirs and theirs[key] != value]  # fmt: skip
    if different:
        raise UsageError(
            f"--resume: {path} was written by a different run ({'; '.join(different)}): use --force to start "
            "over, or set run.name to write elsewhere"
        )
    if record.get("global_batch", global_batch) != global_batch:
        raise UsageError(
            f"--resume: {path} was written with {record['global_batch']} sequences per optimiser step, and this "
            f"launch makes {global_batch} (wmtp.batch_size x processes x wmtp.grad_accum): set wmtp.batch_size "
            "or wmtp.grad_accum so that they match"
        )


def report_incomplete(run_dir: Path) -> None:
    """Say which half-written checkpoints ``--resume`` ignores."""
    for path in incomplete_checkpoints(run_dir):
        logger.warning("--resume: ignoring %s: no %s, so the run stopped while writing it", path, STATE_FILE)


def remove_partial(run_dir: Path) -> None:
    """Delete what a run killed while saving left behind."""
    for partial in incomplete_checkpoints(run_dir):
        shutil.rmtree(partial, ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
