"""Data-parallel training: ``train-wmtp`` on 2 CPU processes (gloo) matches one process with the same global batch.

The single-process run is :func:`wmtp_cli.training.train_wmtp` in the test's own process, which is what
``wmtp train-wmtp`` calls; the two processes are started by ``torchrun`` (torchrun_helpers.py).

Also: the accelerate configs in ``recipes/accelerate/`` load and name their command.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import make_tiny_mtp_model
from torchrun_helpers import (
    ACCELERATE_CONFIGS,
    RTOL,
    alongside_torchrun,
    assert_same_training,
    metrics,
    needs_gloo,
    needs_torchrun,
    prepared_base,
    write_recipe,
)

from wmtp_cli.config import load_recipe
from wmtp_cli.rewards import score
from wmtp_cli.training import checkpoints, train_critic, train_wmtp


@needs_torchrun
@needs_gloo
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    recipe_path, shared, model, base_dir = prepared_base(tmp_path)
    alongside_torchrun(
        ["train-wmtp", str(recipe_path), *shared, "run.name=multi", "wmtp.batch_size=2"],
        lambda: train_wmtp(load_recipe(recipe_path, [*shared, "run.name=single", "wmtp.batch_size=4"])),
    )

    one = tmp_path / "runs" / "single" / "wmtp-critic"
    two = tmp_path / "runs" / "multi" / "wmtp-critic"
    # One RNG state and one shard file per process: proof that the torchrun run really had two ranks.
    latest = checkpoints.latest_checkpoint(two)
    assert {p.name for p in latest.glob("rng-*.pt")} == {"rng-0.pt", "rng-1.pt"}
    assert {p.name for p in latest.glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    assert json.loads((two / "parallel.json").read_text())["strategy"] == "ddp"
    assert [r["step"] for r in metrics(one)] == [1, 2, 3, 4]
    # Each weight file against where its training started: the converted model, and the critic of stage 1.
    assert_same_training(one, two, {"model.safetensors": model, "value_head.safetensors": base_dir / "critic"})


@pytest.mark.parametrize("name", ["1gpu.yaml", "fsdp2-8gpu.yaml"])
def test_accelerate_configs_load_and_name_their_command(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    path = ACCELERATE_CONFIGS / name
    config = load_config_from_file(str(path))
    assert config.mixed_precision == "bf16" and not config.use_cpu
    assert f"accelerate launch --config_file recipes/accelerate/{name} -m wmtp_cli train-wmtp" in path.read_text()
    if name == "1gpu.yaml":
        assert config.distributed_type == DistributedType.NO and config.num_processes == 1
        return
    # The sharding is the recipe's run.strategy (tests/test_fsdp2.py runs it); the config only launches 8 ranks.
    assert config.distributed_type == DistributedType.MULTI_GPU and config.num_processes == 8
    recipe_path = ACCELERATE_CONFIGS.parent / "mtp-7b-codecontests.yaml"
    assert load_recipe(recipe_path).run.strategy == "fsdp2"
    assert f"--config_file recipes/accelerate/{name}" in recipe_path.read_text()


@needs_torchrun
@needs_gloo
def test_critic_stage_on_two_processes_matches_one(tmp_path):
    """Stage 1 trains its head data-parallel (DDP on the head alone); 2 x 2 sequences per step equal 1 x 4."""
    model = make_tiny_mtp_model(tmp_path / "policy")
    recipe_path = write_recipe(tmp_path, model)
    score(load_recipe(recipe_path))
    shared = [f"data.scored={tmp_path / 'runs' / 'base' / 'scored'}", "critic.max_steps=6", "critic.eval_every=3"]
    single = alongside_torchrun(
        ["train-critic", str(recipe_path), *shared, "run.name=multi", "critic.batch_size=2"],
        lambda: train_critic(load_recipe(recipe_path, [*shared, "run.name=single", "critic.batch_size=4"])),
    )
    report = json.loads((tmp_path / "runs" / "multi" / "critic" / "critic_report.json").read_text())
    assert math.isclose(report["val_loss"], single.report.val_loss, rel_tol=RTOL)
    assert report["val_examples"] == single.report.val_examples
    one = load_file(str(single.folder / "value_head.safetensors"))
    two = load_file(str(tmp_path / "runs" / "multi" / "critic" / "value_head.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
