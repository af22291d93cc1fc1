"""``run.report_to``: accelerate's trackers get exactly what metrics.jsonl holds; bad names and missing packages fail
in one line before any work."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import assert_usage_error
from training_fixtures import scored_setup, write_recipe

from wmtp_cli.config import load_recipe
from wmtp_cli.training import train_critic, train_wmtp

pytest.importorskip("tensorboard")


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """The recipe of a scored tiny run, without a critic."""
    return scored_setup(tmp_path_factory.mktemp("trackers"), with_critic=False)


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar the run's TensorBoard files hold, as TensorBoard reads them (purged steps left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "trackers" / "wmtp"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def jsonl_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The same from metrics.jsonl: each numeric key's (step, value) pairs."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key not in ("step", "time"):
                out.setdefault(key, []).append((record["step"], value))
    return out


def assert_same_numbers(run_dir: Path, steps: list[int]) -> None:
    logged, tracked = jsonl_scalars(run_dir), tensorboard_scalars(run_dir)
    assert [step for step, _ in logged["loss"]] == steps
    assert tracked.keys() == logged.keys()
    for key, pairs in logged.items():
        assert [step for step, _ in tracked[key]] == [step for step, _ in pairs], key
        for (_, value), (_, stored) in zip(pairs, tracked[key], strict=True):
            assert math.isclose(stored, value, rel_tol=1e-6, abs_tol=1e-30), (key, stored, value)  # float32 in TB


def test_train_critic_reports_to_tensorboard(scored):
    recipe = load_recipe(scored, ["run.report_to=tensorboard", "critic.max_steps=4", "critic.eval_every=2"])
    folder = train_critic(recipe).folder
    assert_same_numbers(folder, [1, 2, 3, 4])
    assert [step for step, _ in tensorboard_scalars(folder)["val_loss"]] == [2, 4]


def test_train_wmtp_reports_to_tensorboard_and_resumes_at_the_right_steps(scored):
    settings = ["run.report_to=[tensorboard]", "wmtp.weighting=uniform", "wmtp.max_steps=3", "run.save_every=2"]
    run_dir = train_wmtp(load_recipe(scored, settings)).run_dir
    assert_same_numbers(run_dir, [1, 2, 3])
    # As if killed after logging step 3 but before its checkpoint. Resumed with another seed (the batches are a
    # function of seed and step), so step 3's loss differs: TensorBoard must show the resumed run's, not both.
    shutil.rmtree(run_dir / "checkpoints" / "step-00000003")
    first = dict(tensorboard_scalars(run_dir)["loss"])[3]
    train_wmtp(load_recipe(scored, [*settings, "wmtp.max_steps=4", "run.seed=1"]), resume=True)
    assert_same_numbers(run_dir, [1, 2, 3, 4])
    assert dict(tensorboard_scalars(run_dir)["loss"])[3] != pytest.approx(first)


def test_no_trackers_by_default(scored):
    run_dir = train_wmtp(load_recipe(scored, ["wmtp.weighting=ntp", "wmtp.max_steps=1"])).run_dir
    assert (run_dir / "metrics.jsonl").is_file() and not (run_dir / "trackers").exists()


def test_unknown_tracker_fails_when_the_recipe_is_checked(scored, wmtp):
    result = wmtp("train-critic", str(scored), "run.report_to=tensorbord")
    assert_usage_error(result, "run.report_to", "did you mean 'tensorboard'")
    assert_usage_error(wmtp("recipe", "validate", str(scored), "run.report_to=[none, wandb]"), "'none'")


def test_missing_tracker_package_fails_before_anything_loads(tmp_path, wmtp, monkeypatch):
    import accelerate.utils

    # Nothing here exists: the tracker is checked before the data and the model are read.
    recipe = write_recipe(tmp_path, tmp_path / "no-model", data={"scored": str(tmp_path / "no-data")})
    assert_usage_error(wmtp("train-wmtp", str(recipe), "run.report_to=aim"), "aim", "pip install aim")
    monkeypatch.setattr(accelerate.utils, "is_tensorboard_available", lambda: False)
    result = wmtp("train-critic", str(recipe), "run.report_to=[tensorboard]")
    assert_usage_error(result, "tensorboard", "pip install 'wmtp-cli[tensorboard]'")
