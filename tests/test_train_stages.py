"""``wmtp train-critic`` and ``wmtp train-wmtp`` end to end on a tiny model, offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, assert_usage_error
from safetensors.torch import load_file
from training_fixtures import scored_setup, write_recipe

from wmtp_cli.config import load_recipe
from wmtp_cli.errors import RunError
from wmtp_cli.training import train_critic, train_wmtp


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """Recipe of a scored tiny run with a trained critic (shared: tests write under their own run.name)."""
    return scored_setup(tmp_path_factory.mktemp("train"))


def variant(setup: Path, name: str, **sections) -> Path:
    """The shared setup's recipe under another run.name, reading the shared scored data and critic."""
    folder = setup.parent
    base = json.loads(setup.read_text())
    sections.setdefault("data", {}).setdefault("scored", str(folder / "runs" / "r" / "scored"))
    sections.setdefault("wmtp", {}).setdefault("critic_path", str(folder / "runs" / "r" / "critic"))
    merged = {key: {**base.get(key, {}), **sections.get(key, {})} for key in {*base, *sections}}
    merged["run"]["name"] = name
    return write_recipe(folder, Path(base["model"]["path"]), name, **merged)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_critic_stage_writes_head_report_and_metrics(setup):
    critic = setup.parent / "runs" / "r" / "critic"
    report = json.loads((critic / "critic_report.json").read_text())
    assert {"val_loss", "final_value_pearson", "final_value_auc", "best_step"} <= report.keys()
    assert report["final_value_auc"] is not None and 0 <= report["final_value_auc"] <= 1  # labels are binary
    assert report["train_examples"] + report["val_examples"] == 24
    assert (critic / "value_head.safetensors").is_file() and (critic / "recipe.yaml").is_file()
    records = [json.loads(line) for line in (critic / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [5, 10]


def test_critic_stops_when_validation_stops_improving(setup):
    recipe = load_recipe(variant(setup, "patience"), ["critic.lr=1e-12", "critic.eval_every=1", "critic.patience=2",
                                                      "critic.max_steps=50"])  # fmt: skip
    report = train_critic(recipe).report
    assert report.stopped_early and report.steps == 3 and report.best_step == 1


def test_train_wmtp_changes_every_trainable_parameter(setup, wmtp):
    recipe = variant(setup, "changes")
    result = wmtp("train-wmtp", str(recipe))
    assert result.returncode == 0, result.stderr
    run = setup.parent / "runs" / "changes" / "wmtp-critic"
    before, after = weights(Path(json.loads(recipe.read_text())["model"]["path"])), weights(run / "final")
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []
    head_before = load_file(str(setup.parent / "runs" / "r" / "critic" / "value_head.safetensors"))
    head_after = load_file(str(run / "final" / "value_head.safetensors"))
    assert all(not torch.equal(head_before[k], head_after[k]) for k in head_before)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("ce_head_1", "ce_head_4", "vf_loss", "weight_head_2", "weight_entropy", "grad_norm", "lr"):
        assert all(key in r for r in records), key
    assert all(abs(sum(r[f"weight_head_{k}"] for k in range(1, 5)) - 1) < 1e-5 for r in records)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"][-2:]
    assert (run / "recipe.yaml").is_file() and (run / "run_info.json").is_file()


def test_ntp_baseline_leaves_the_other_heads_alone(setup):
    result = train_wmtp(load_recipe(variant(setup, "ntp"), ["wmtp.weighting=ntp"]))
    before = weights(Path(json.loads(setup.read_text())["model"]["path"]))
    after = weights(result.final_dir)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("heads.1.", "heads.2.", "heads.3.")))
    assert not torch.equal(before["heads.0.mlp.down_proj.weight"], after["heads.0.mlp.down_proj.weight"])
    assert not (result.final_dir / "value_head.safetensors").exists()


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(setup, wmtp, monkeypatch):
    from wmtp_cli.training.objective import WMTPObjective

    forward, calls = WMTPObjective.forward, []

    def diverging(self, batch, lm_scale, vf_scale):
        """The objective, with a NaN loss from the fifth micro-batch on (step 3: grad_accum is 2)."""
        loss, metrics = forward(self, batch, lm_scale, vf_scale)
        calls.append(1)
        if len(calls) >= 5:
            loss, metrics = loss * float("nan"), torch.cat([metrics[:1] * float("nan"), metrics[1:]])
        return loss, metrics

    monkeypatch.setattr(WMTPObjective, "forward", diverging)
    recipe = variant(setup, "nan", wmtp={"max_steps": 6}, run={"save_every": 1})
    result = wmtp("train-wmtp", str(recipe))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "stopped: the LM loss became nan at step 3" in result.stderr
    assert "The last good checkpoint (step 2) is intact" in result.stderr
    assert "the model diverged (wmtp.lr = 0.001 is too high" in result.stderr
    checkpoints = setup.parent / "runs" / "nan" / "wmtp-critic" / "checkpoints"
    kept = sorted(p.name for p in checkpoints.iterdir())
    assert kept and all((checkpoints / name / "trainer_state.json").is_file() for name in kept)
    assert not (setup.parent / "runs" / "nan" / "wmtp-critic" / "final").exists()


def _subprocess_train(recipe: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "wmtp_cli", "train-wmtp", str(recipe), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(setup):
    settings = {"wmtp": {"max_steps": 24, "warmup_steps": 3}, "run": {"save_every": 4, "keep_last": 2}}
    straight = _subprocess_train(variant(setup, "straight", **settings))
    killed_recipe = variant(setup, "killed", **settings)
    killed = _subprocess_train(killed_recipe)
    checkpoints = setup.parent / "runs" / "killed" / "wmtp-critic" / "checkpoints"
    deadline = time.monotonic() + 240
    while not (checkpoints / "step-00000008" / "trainer_state.json").exists():
        assert killed.poll() is None, killed.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    assert killed.poll() is None, "the run finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = _subprocess_train(killed_recipe, "--resume")
    for process in (straight, resumed):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    a = weights(setup.parent / "runs" / "straight" / "wmtp-critic" / "final")
    b = weights(setup.parent / "runs" / "killed" / "wmtp-critic" / "final")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    logged = (setup.parent / "runs" / "killed" / "wmtp-critic" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == list(range(1, 25))


def test_existing_run_needs_resume_or_force(setup, wmtp):
    recipe = variant(setup, "twice", wmtp={"max_steps": 1})
    assert wmtp("train-wmtp", str(recipe)).returncode == 0
    assert_usage_error(wmtp("train-wmtp", str(recipe)), "--resume", "--force")
    assert wmtp("train-wmtp", str(recipe), "--force").returncode == 0


def test_lora_trains_adapters_and_saves_a_merged_model(setup):
    pytest.importorskip("peft")
    result = train_wmtp(load_recipe(variant(setup, "lora"), ["wmtp.lora_r=4", "wmtp.lr=1e-2"]))
    before = weights(Path(json.loads(setup.read_text())["model"]["path"]))
    after = weights(result.final_dir)
    assert before.keys() == after.keys()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["heads.0.self_attn.q_proj.weight"], after["heads.0.self_attn.q_proj.weight"])


def test_errors_are_one_line(setup, wmtp, tmp_path):
    missing = variant(setup, "e1", data={"scored": str(tmp_path / "nowhere")})
    assert_usage_error(wmtp("train-critic", str(missing)), "no scored data", "wmtp score")
    no_critic = variant(setup, "e2", wmtp={"critic_path": str(tmp_path / "none")})
    assert_usage_error(wmtp("train-wmtp", str(no_critic)), "train-critic")
    assert_usage_error(wmtp("train-wmtp", str(variant(setup, "e3")), "data.packing=true"), "packing")
    assert_usage_error(wmtp("train-wmtp", str(variant(setup, "e4")), "wmtp.weighting=dense_reward"), "dense")
    big = variant(setup, "e5", wmtp={"batch_size": 64})
    assert_usage_error(wmtp("train-wmtp", str(big)), "lower the batch size")
    from wmtp_cli.critic import ValueHead, ValueHeadConfig

    ValueHead(ValueHeadConfig(input_size=7, hidden_size=4)).save(tmp_path / "wrong-critic")
    wrong = variant(setup, "e6", wmtp={"critic_path": str(tmp_path / "wrong-critic")})
    assert_usage_error(wmtp("train-wmtp", str(wrong)), "different model")
    with pytest.raises(RunError):
        from wmtp_cli.training.runtime import require_finite

        require_finite({"the loss": (float("nan"), "causes")}, 3, "")
