"""FSDP2 (``run.strategy: fsdp2``): ``train-wmtp`` sharded over 2 CPU processes (gloo) against one process.

The 2-process runs use the memory-efficient head loop (the default), activation checkpointing and critic
weighting with the critic trained alongside, so every piece of the 7B path runs sharded here. The
single-process reference is the plain (unsharded) path with the same global batch. Tolerances are those
of the DDP test (torchrun_helpers.py): FSDP2 changes where the sums happen (reduce-scatter of gradient
shards, a global norm summed from shard norms), not what is summed.

Checkpoints are DCP shards that reshard on load: a 2-process FSDP2 run killed after a checkpoint resumes
in one process and ends where an uninterrupted 2-process run ends.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from adapter_checks import assert_adapter_matches_merged
from conftest import assert_usage_error
from tiny_models import make_tiny_mtp_model
from torchrun_helpers import (
    REPO_ROOT,
    TORCHRUN,
    alongside_torchrun,
    assert_same_training,
    finish,
    metrics,
    needs_gloo,
    needs_torchrun,
    prepared_base,
    start,
    stop,
)

from wmtp_cli.config import load_recipe
from wmtp_cli.training import train_wmtp

SHARDED = ["run.strategy=fsdp2", "model.gradient_checkpointing=true", "wmtp.memory_efficient_heads=true"]


@pytest.fixture
def base(tmp_path):
    return prepared_base(tmp_path)


def assert_sharded_in_halves(run) -> None:
    """Each of the 2 processes held about half the parameter elements (FSDP2 pads dim 0 to a multiple of 2)."""
    layout = json.loads((run / "parallel.json").read_text())
    assert layout["strategy"] == "fsdp2" and layout["world_size"] == 2
    total, held = layout["parameter_elements"], layout["elements_per_process"]
    assert len(held) == 2 and sum(held) >= total
    for count in held:
        assert 0.45 * total <= count <= 0.55 * total, (count, total)
    # the largest parameter (the embedding or unembedding): each process holds about half its rows, none twice
    shards, size = layout["largest_parameter_elements_per_process"], layout["largest_parameter_elements"]
    assert sum(shards) == size and min(shards) >= 0.45 * size, (layout["largest_parameter"], shards, size)


@needs_torchrun
@needs_gloo
def test_fsdp2_on_two_processes_matches_one_process(base, tmp_path):
    recipe_path, shared, model, base_dir = base
    alongside_torchrun(
        ["train-wmtp", str(recipe_path), *shared, *SHARDED, "run.name=multi", "wmtp.batch_size=2"],
        lambda: train_wmtp(load_recipe(recipe_path, [*shared, "run.name=single", "wmtp.batch_size=4"])),
    )
    one, two = tmp_path / "runs" / "single" / "wmtp-critic", tmp_path / "runs" / "multi" / "wmtp-critic"
    assert_sharded_in_halves(two)
    assert_same_training(one, two, {"model.safetensors": model, "value_head.safetensors": base_dir / "critic"})


@needs_torchrun
@needs_gloo
def test_lora_under_fsdp2_matches_one_process(base, tmp_path):
    pytest.importorskip("peft")
    recipe_path, shared, model, _ = base
    lora = [*shared, "wmtp.lora_r=4", "wmtp.weighting=uniform"]
    alongside_torchrun(
        ["train-wmtp", str(recipe_path), *lora, *SHARDED, "run.name=multi", "wmtp.batch_size=2"],
        lambda: train_wmtp(load_recipe(recipe_path, [*lora, "run.name=single", "wmtp.batch_size=4"])),
    )
    one, two = tmp_path / "runs" / "single" / "wmtp-uniform", tmp_path / "runs" / "multi" / "wmtp-uniform"
    assert_sharded_in_halves(two)
    assert_same_training(one, two, {"model.safetensors": model})  # merged weights, against the base model
    # wmtp.lora_save=both: the adapter collected from the gathered stream is the one merged into the weights
    assert_adapter_matches_merged(two / "final" / "adapter", two / "final", model)


@needs_torchrun
@needs_gloo
def kill_after_first_checkpoint(command: list[str], run) -> None:
    """Start ``command``, SIGKILL it (and every process it started) once checkpoint 3 is complete."""
    killed = start(command)
    deadline = time.monotonic() + 240
    try:
        while not (run / "checkpoints" / "step-00000003" / "trainer_state.json").exists():
            assert killed.poll() is None, killed.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        assert killed.poll() is None, "the run finished before it could be killed"
    finally:
        stop(killed)
        killed.communicate()
    assert killed.returncode != 0 and not (run / "final").exists()


def test_killed_fsdp2_runs_resume_in_another_number_of_processes(base, tmp_path, wmtp, caplog):
    """2 processes write and 1 resumes; 1 writes and 2 resume. A lower learning rate than the other tests: over
    24 steps at 1e-2 the runs' rounding differences grew past RTOL (1.3e-5 at step 42 of 60); at 1e-3 the
    largest relative difference of any metric was 2.2e-6."""
    recipe_path, shared, model, base_dir = base
    settings = [*shared, *SHARDED, "wmtp.max_steps=24", "wmtp.warmup_steps=3", "run.save_every=3", "wmtp.lr=1e-3",
                "critic.lr=1e-3", "run.log_every=1"]  # fmt: skip
    command = ["-m", "wmtp_cli", "train-wmtp", str(recipe_path), *settings]
    two_processes = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *command, "wmtp.batch_size=2"]
    one_process = [sys.executable, *command, "wmtp.batch_size=4"]
    finish(start([*two_processes, "run.name=straight"]), "the uninterrupted 2-process run")
    straight = tmp_path / "runs" / "straight" / "wmtp-critic"
    initial = {"model.safetensors": model, "value_head.safetensors": base_dir / "critic"}

    # 2 -> 1, with a checkpoint folder that lacks its completion marker (a kill during the write): ignored, said so.
    run = tmp_path / "runs" / "two-then-one" / "wmtp-critic"
    kill_after_first_checkpoint([*two_processes, "run.name=two-then-one"], run)
    half = run / "checkpoints" / "step-00000023"
    half.mkdir()
    (half / "__0_0.distcp").write_bytes(b"half")
    resumed = wmtp("train-wmtp", str(recipe_path), *settings, "run.name=two-then-one", "wmtp.batch_size=4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    notices = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "ignoring" in r.getMessage()]
    assert len(notices) == 1 and "step-00000023" in notices[0] and "\n" not in notices[0], notices
    assert [r["step"] for r in metrics(run)] == list(range(1, 25))
    assert_same_training(straight, run, initial)

    # 1 -> 2
    run = tmp_path / "runs" / "one-then-two" / "wmtp-critic"
    kill_after_first_checkpoint([*one_process, "run.name=one-then-two"], run)
    finish(start([*two_processes, "run.name=one-then-two", "--resume"]), "the 2-process resume")
    assert [r["step"] for r in metrics(run)] == list(range(1, 25))
    assert_same_training(straight, run, initial)


def test_resume_refuses_a_checkpoint_of_another_run(base, wmtp, tmp_path):
    recipe_path, shared, _, _ = base
    uniform = [*shared, "run.name=r", "wmtp.weighting=uniform", "run.save_every=1"]
    first = wmtp("train-wmtp", str(recipe_path), *uniform, "wmtp.max_steps=2")
    assert first.returncode == 0, first.stderr
    other_shape = make_tiny_mtp_model(tmp_path / "two-heads", n_future=2)
    resumed = wmtp("train-wmtp", str(recipe_path), *uniform, "wmtp.max_steps=4", f"model.path={other_shape}",
                   "--resume")  # fmt: skip
    assert_usage_error(resumed, "--resume", "different run", "model shape")
    resumed = wmtp("train-wmtp", str(recipe_path), *uniform, "wmtp.max_steps=4", "wmtp.batch_size=2", "--resume")
    assert_usage_error(resumed, "sequences per optimiser step", "wmtp.batch_size")


def test_fsdp2_with_a_model_whose_block_class_is_not_found_is_one_line(base, wmtp, monkeypatch):
    from wmtp_cli.training import parallel

    recipe_path, shared, _, _ = base
    monkeypatch.setattr(parallel, "block_classes", lambda model: ["DecoderLayer"])
    result = wmtp("train-wmtp", str(recipe_path), *shared, "run.strategy=fsdp2", "run.name=nb", "wmtp.max_steps=1")
    assert_usage_error(result, "run.strategy=fsdp2", "DecoderLayer")


def test_the_gpu_check_script_runs_at_toy_size_on_a_cpu(tmp_path):
    """scripts/gpu_train_check.py measures a GPU; --tiny runs the same code (FSDP2, head loop, checkpointing,
    critic and uniform interleaved) on a toy shape, so the script a GPU session runs is known to work."""
    import subprocess

    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gpu_train_check.py"), "--tiny", "--steps", "2",
                           "--warmup", "1", "--json", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["gpu"] == "CPU" and report["trunk_layers"] == 2
    for name in ("critic", "uniform"):
        assert report[name]["tokens_per_s"] > 0
    assert report["critic_over_uniform"]["median_pair"] > 0
