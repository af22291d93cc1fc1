"""``wmtp score`` end to end, offline: labels, execution, a tiny reward model, dense rewards, model samples, cache."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from conftest import assert_usage_error
from tiny_models import make_tiny_mtp_model, make_tiny_reward_model

from wmtp_cli.config import load_recipe
from wmtp_cli.rewards import score
from wmtp_cli.rewards.reward_model import RewardModel

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_mbpp = pytest.mark.skipif(
    not (SHARED_DATA / "mbpp").is_dir(), reason=f"real benchmark data not found at {SHARED_DATA} (outside the repo)"
)

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
ROWS = [
    {"task_id": "add", "prompt": "# add(a, b): their sum\n", "label": 1,
     "completion": "def add(a, b):\n    return a + b\n", "tests": ADD_TESTS},
    {"task_id": "add", "prompt": "# add(a, b): their sum\n", "label": 0,
     "completion": "def add(a, b):\n    return abs(a) + b\n", "tests": ADD_TESTS},
    {"task_id": "neg", "prompt": "# neg(a): minus a\n", "label": 1,
     "completion": "def neg(a):\n    return -a\n", "tests": ["assert neg(2) == -2"]},
]  # fmt: skip


def write_recipe(tmp_path: Path, **sections) -> Path:
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    recipe = {
        "data": {"source": "local", "path": str(data_file)},
        "run": {"output_dir": str(tmp_path / "runs"), "name": "s"},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def scored(tmp_path: Path) -> datasets.Dataset:
    return datasets.load_from_disk(str(tmp_path / "runs" / "s" / "scored"))


def test_labels(tmp_path, wmtp):
    result = wmtp("score", str(write_recipe(tmp_path, reward={"source": "labels"})))
    assert result.returncode == 0, result.stderr
    table = scored(tmp_path)
    assert set(table.column_names) >= {"task_id", "prompt", "completion", "reward", "source"}
    assert table["reward"] == [1.0, 0.0, 1.0] and table["origin"] == ["solution", "incorrect_solution", "solution"]
    run = tmp_path / "runs" / "s"
    assert (run / "recipe.yaml").is_file() and (run / "run_info.json").is_file()
    assert "mean reward" in result.stdout


def test_execution_needs_the_opt_in(tmp_path, wmtp):
    recipe = write_recipe(tmp_path, reward={"source": "execution"})
    assert_usage_error(wmtp("score", str(recipe)), "--allow-code-execution")
    assert not (tmp_path / "runs" / "s" / "scored").exists()


def test_execution_fraction_and_all_or_nothing(tmp_path, wmtp):
    recipe = write_recipe(tmp_path, reward={"source": "execution"})
    assert wmtp("score", str(recipe), "--allow-code-execution").returncode == 0
    table = scored(tmp_path)
    assert table["reward"] == [1.0, 0.5, 1.0]  # abs(a) + b passes the first test only
    assert table["n_tests"] == [2, 2, 1] and table["status"][0] == "passed"
    result = wmtp("score", str(recipe), "reward.all_or_nothing=true", "--allow-code-execution")
    assert result.returncode == 0, result.stderr
    assert scored(tmp_path)["reward"] == [1.0, 0.0, 1.0]


def test_reward_model_scores_and_dense_rewards(tmp_path, wmtp):
    rm = make_tiny_reward_model(tmp_path / "rm")
    policy = make_tiny_mtp_model(tmp_path / "policy")
    recipe = write_recipe(
        tmp_path,
        reward={"source": "reward_model", "reward_model": str(rm), "dense": "attention"},
        model={"path": str(policy), "dtype": "fp32"},
    )
    result = wmtp("score", str(recipe))
    assert result.returncode == 0, result.stderr
    table = scored(tmp_path)
    expected = RewardModel(str(rm)).score([r["prompt"] for r in ROWS], [r["completion"] for r in ROWS])
    assert table["reward"] == pytest.approx(expected, abs=1e-5)
    from transformers import AutoTokenizer

    from wmtp_cli.data.tokenization import completion_token_spans

    tokenizer = AutoTokenizer.from_pretrained(policy)
    for row in table:
        n_tokens = len(completion_token_spans(tokenizer, row["prompt"], row["completion"])[0])
        assert len(row["dense_rewards"]) == n_tokens
        assert sum(row["dense_rewards"]) == pytest.approx(row["reward"], abs=1e-5)


def test_model_samples_are_executed(tmp_path, wmtp):
    policy = make_tiny_mtp_model(tmp_path / "policy")
    recipe = write_recipe(
        tmp_path,
        reward={"source": "execution", "completions": "both", "n_samples": 3, "max_new_tokens": 8},
        model={"path": str(policy), "dtype": "fp32"},
    )
    result = wmtp("score", str(recipe), "--allow-code-execution")
    assert result.returncode == 0, result.stderr
    table = scored(tmp_path)
    samples = [row for row in table if row["origin"] == "sample"]
    assert len(samples) == 2 * 3  # two problems, three samples each
    assert all(row["reward"] < 1.0 and row["status"] for row in samples)  # random weights write no working code


def test_labels_refuse_model_samples(tmp_path, wmtp):
    recipe = write_recipe(tmp_path, reward={"source": "labels", "completions": "model"})
    assert_usage_error(wmtp("score", str(recipe)), "labels")


def test_a_rerun_reuses_finished_chunks_and_a_changed_recipe_does_not(tmp_path):
    recipe_path = write_recipe(tmp_path, reward={"source": "labels"})
    first = score(load_recipe(recipe_path))
    assert first.reused_chunks == 0
    chunk = tmp_path / "runs" / "s" / "score_cache" / "chunk-00000.jsonl"
    rows = [json.loads(line) for line in chunk.read_text().splitlines()]
    rows[0]["reward"] = 0.25  # a marker: only a reused chunk can carry it into the output
    chunk.write_text("".join(json.dumps(r) + "\n" for r in rows))
    second = score(load_recipe(recipe_path))
    assert second.reused_chunks == 1 and scored(tmp_path)["reward"][0] == 0.25
    third = score(load_recipe(recipe_path, ["data.max_solutions=1"]))
    assert third.reused_chunks == 0 and scored(tmp_path)["reward"][0] == 1.0


@needs_mbpp
def test_mbpp_references_score_one(tmp_path, wmtp):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "data": {"source": "mbpp", "path": str(SHARED_DATA / "mbpp" / "test.jsonl"), "split": "test", "limit": 12},
        "reward": {"source": "execution"},
        "run": {"output_dir": str(tmp_path / "runs"), "name": "s"},
    }))  # fmt: skip
    result = wmtp("score", str(recipe), "--allow-code-execution")
    assert result.returncode == 0, result.stderr
    table = scored(tmp_path)
    assert len(table) == 12 and set(table["reward"]) == {1.0}
