"""Launching ``wmtp`` on 2 CPU processes with ``torchrun`` (gloo), beside a single-process run, for the
distributed tests (DDP in test_distributed.py, FSDP2 in test_fsdp2.py), and the tolerances they compare with.

``accelerate launch --cpu --num_processes 2`` can fall back to a single process on a machine with few
cores, so the tests start the two processes with ``torchrun``; accelerate reads the environment it sets
(RANK, WORLD_SIZE, ...) and runs MULTI_CPU on gloo, which is the same code path a GPU launch takes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import make_tiny_mtp_model

from wmtp_cli.config import load_recipe
from wmtp_cli.rewards import score
from wmtp_cli.training import train_critic

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
TIMEOUT_S = 300

ACCELERATE_CONFIGS = REPO_ROOT / "recipes" / "accelerate"

needs_torchrun = pytest.mark.skipif(
    not TORCHRUN.is_file(), reason=f"torchrun not found next to the interpreter at {TORCHRUN}"
)
needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this torch build has no torch.distributed gloo backend",
)

# The per-step metrics that must agree; time and throughput are wall-clock, not results.
NOT_COMPARED = {"time", "tokens_per_s"}

# Tolerances. The two runs see the same examples in the same optimiser steps (training/data.py) and
# the loss scaling makes the gradient that of the global batch (training/objective.py), so they differ
# only in the order of floating-point sums: per-process partial sums, the gloo all-reduce of gradients
# and metrics, and DDP's averaging. Each reordering costs ~1e-7 relative in fp32; over 4 seeds the
# metrics differed by at most 1.8e-7 relative. RTOL leaves a factor ~50 for other BLAS builds; a
# normalisation error (per-process means in place of the global mean) moves the loss by 4e-3 and the
# gradient norm by 5e-2 relative, so it still fails loudly.
RTOL = 1e-5
# The weight diagnostics' correlation sits near 0 on this tiny model (-0.013 at step 3), where a relative
# tolerance means nothing: the same 1e-7 reorderings move it by ~2e-7 absolute (1.6e-5 relative). It is
# bounded by 1, so an absolute tolerance with the same factor ~50 of room is the honest one.
CORRELATION_ATOL = 1e-5
# Weights are compared relative to how far training moved them, not to their size. AdamW moves each
# entry by about lr per step whatever its gradient's size, and for an entry whose gradient is a sum that
# cancels to near Adam's eps, m / (sqrt(v) + eps) turns a rounding difference into a visible one: a
# few such entries reached 1.6e-4 of the update (max abs) while the norm of the whole difference stayed
# within 1.3e-6 of the norm of the update. The same normalisation error gives 0.3 and 2 respectively.
WEIGHT_NORM_RTOL = 1e-4
WEIGHT_MAX_RTOL = 1e-2


def write_data(path: Path, n_problems: int = 16) -> None:
    """``n_problems`` problems, each with a correct and a (longer) incorrect solution.

    The two solutions differ in length so that the processes' micro-batches hold different numbers of
    trained tokens: only then does normalising by the global count, not per process, matter.
    """
    rows = []
    for i in range(n_problems):
        prompt = f"# f{i}(a): a plus {i}\n"
        rows.append({"task_id": f"t{i}", "prompt": prompt, "label": 1,
                     "completion": f"def f{i}(a):\n    return a + {i}\n", "tests": []})  # fmt: skip
        rows.append({"task_id": f"t{i}", "prompt": prompt, "label": 0,
                     "completion": f"def f{i}(a):\n    b = a * {i}\n" + "    b = b - a\n" * (i % 4) + "    return b\n",
                     "tests": []})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_recipe(tmp_path: Path, model: Path) -> Path:
    data = tmp_path / "data.jsonl"
    write_data(data)
    recipe = {
        "model": {"path": str(model), "dtype": "fp32"},
        "data": {"source": "local", "path": str(data), "max_length": 64},
        "reward": {"source": "labels"},
        "critic": {"hidden_size": 16, "lr": 1e-2, "batch_size": 4, "max_steps": 10, "eval_every": 5,
                   "val_fraction": 0.25},
        # grad_clip below the first steps' gradient norm (~1.5), so clipping of the all-reduced gradient is in play.
        "wmtp": {"weighting": "critic", "lambda_vf": 0.5, "lr": 1e-2, "max_steps": 4, "batch_size": 4,
                 "grad_accum": 2, "grad_clip": 1.0},
        "run": {"output_dir": str(tmp_path / "runs"), "name": "base", "log_every": 1, "save_every": 100,
                "mixed_precision": "no"},
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def child_env() -> dict[str, str]:
    # Drop any launcher settings this test itself may run under: the single-process run must be one process.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACCELERATE_")
        and k not in {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    }
    return {
        **inherited,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(REPO_ROOT),
        # One thread per process: the two ranks and the single run share the machine's cores, and a
        # fixed thread count keeps each process's own reductions in a fixed order.
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def start(command: list[str]) -> subprocess.Popen:
    # A session of its own, so that a timeout can end torchrun together with the ranks it started.
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), start_new_session=True
    )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): torchrun starts its ranks in sessions of their own, so
    killing torchrun's process group leaves them running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and everything it started, at once (as a power cut or the OOM killer would)."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def finish(process: subprocess.Popen, what: str) -> None:
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(process)
        out, err = process.communicate()
        pytest.fail(f"{what} did not finish in {TIMEOUT_S} s\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-8000:]}")
    assert process.returncode == 0, f"{what} failed ({process.returncode})\n--- stderr\n{err[-8000:]}"


def alongside_torchrun(arguments: list[str], single_process):
    """Start ``wmtp ARGUMENTS`` on 2 torchrun ranks, run ``single_process()`` here meanwhile, wait; its result.

    torchrun first: its ranks spend ~10 s importing, during which the single-process run (in this
    process, where everything is imported already) does its few steps. One thread, because the
    machine may have only 2 cores, both wanted by the ranks.
    """
    multi = start([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "wmtp_cli", *arguments])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        result = single_process()
    except BaseException:
        stop(multi)
        multi.communicate()
        raise
    finally:
        torch.set_num_threads(threads)
    finish(multi, f"{arguments[0]} in 2 processes (torchrun)")
    return result


def metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / name))


def prepared_base(tmp_path: Path) -> tuple[Path, list[str], Path, Path]:
    """A tiny model, its scored data and its stage-1 critic: (recipe, the overrides every run shares, the model
    folder, the base run folder)."""
    model = make_tiny_mtp_model(tmp_path / "policy")
    recipe_path = write_recipe(tmp_path, model)
    recipe = load_recipe(recipe_path)
    score(recipe)
    train_critic(recipe)
    base_dir = tmp_path / "runs" / "base"
    shared = [f"data.scored={base_dir / 'scored'}", f"wmtp.critic_path={base_dir / 'critic'}"]
    return recipe_path, shared, model, base_dir


def assert_same_training(one: Path, two: Path, initial: dict[str, Path]) -> None:
    """Per-step metrics within RTOL (CORRELATION_ATOL for the correlation); each weight file in ``initial``
    (name -> the folder its training started from) within WEIGHT_*_RTOL of how far training moved it."""
    steps_one, steps_two = metrics(one), metrics(two)
    assert [r["step"] for r in steps_one] == [r["step"] for r in steps_two]
    for a, b in zip(steps_one, steps_two, strict=True):
        assert a.keys() == b.keys()
        for key in a.keys() - NOT_COMPARED:
            atol = CORRELATION_ATOL if key == "weight_delta_correlation" else 0.0
            assert math.isclose(a[key], b[key], rel_tol=RTOL, abs_tol=atol), (a["step"], key, a[key], b[key])
    assert steps_one[-1]["loss"] < steps_one[0]["loss"]  # it trained, so the comparison is not of two no-ops
    for name, start in initial.items():
        w_one, w_two, w_start = weights(one, name), weights(two, name), load_file(str(start / name))
        assert w_one.keys() == w_two.keys() == w_start.keys()
        update = torch.cat([(w_one[k].float() - w_start[k].float()).flatten() for k in w_one])
        difference = torch.cat([(w_one[k].float() - w_two[k].float()).flatten() for k in w_one])
        assert difference.norm() <= WEIGHT_NORM_RTOL * update.norm(), (name, difference.norm(), update.norm())
        assert difference.abs().max() <= WEIGHT_MAX_RTOL * update.abs().max(), (name, difference.abs().max())
