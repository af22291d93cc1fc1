"""Reward sources are declared once (wmtp_cli/reward_sources.py): a plain callable registered by name is a
``reward.source`` like the built-in ones; dense rewards are their own step; the scored data set has one schema."""

from __future__ import annotations

import datasets
import pytest
from conftest import assert_usage_error
from test_scoring import ROWS, scored, write_recipe

from wmtp_cli.data.scored import SCORED_COLUMNS, load_scored, scored_row, write_scored
from wmtp_cli.errors import UsageError
from wmtp_cli.reward_sources import REWARD_SOURCES, Reward, RewardSource, register
from wmtp_cli.rewards.dense import dense_rewards


def _returns_a_sum(recipe, resources):
    def returns_a_sum(prompts, completions, *, task_id, progress=None, **columns):
        return [
            Reward(float("+" in c), status=f"{t}: {len(p)}")
            for p, c, t in zip(prompts, completions, task_id, strict=True)
        ]

    return returns_a_sum


@pytest.fixture
def sum_source():
    source = register(RewardSource("has_sum", "1 when the completion adds", _returns_a_sum))  # the one line
    try:
        yield source
    finally:
        del REWARD_SOURCES["has_sum"]


def test_a_registered_reward_source_scores_wmtp_score_data(sum_source, tmp_path, wmtp):
    result = wmtp("score", str(write_recipe(tmp_path, reward={"source": "has_sum"})))
    assert result.returncode == 0, result.stderr
    table = scored(tmp_path)
    assert table["reward"] == [1.0, 1.0, 0.0]  # add, add (abs(a) + b), neg
    assert table["status"] == [f"{r['task_id']}: {len(r['prompt'])}" for r in ROWS]  # each row's own columns
    assert table["dense_rewards"] == [[], [], []]


def test_an_unregistered_reward_source_is_a_usage_error_naming_the_registered_ones(tmp_path, wmtp):
    result = wmtp("score", str(write_recipe(tmp_path, reward={"source": "has_sum"})))
    assert_usage_error(result, "reward.source")
    assert all(name in result.stderr for name in REWARD_SOURCES)


class _FakeRewardModel:
    """Dense rewards that say which method made them and from what."""

    def prefix_rewards(self, prompt, completion, tokenizer):
        return [float(len(completion)), -1.0]

    def attention_rewards(self, prompt, completion, reward, tokenizer):
        return [reward, float(len(prompt))]


def test_dense_rewards_are_a_step_over_any_sequence_rewards():
    seen = []
    args = (["ab", "c"], ["xyz", ""], [0.5, 2.0], _FakeRewardModel(), None)
    assert dense_rewards("prefix", *args, progress=lambda done, total: seen.append((done, total))) == [
        [3.0, -1.0], [0.0, -1.0]]  # fmt: skip
    assert dense_rewards("attention", *args) == [[0.5, 2.0], [2.0, 1.0]]
    assert seen == [(1, 2), (2, 2)]
    with pytest.raises(ValueError, match="prefix, attention"):
        dense_rewards("sideways", *args)


def test_scored_rows_have_every_column_and_round_trip(tmp_path):
    rows = [scored_row("t/1", "toy", "p", "c", reward=0.5, label=1, n_passed=2, n_tests=3, status="failed",
                       dense_rewards=[0.25, 0.25]),
            scored_row("t/2", "toy", "p", "d", reward=1.0)]  # fmt: skip
    assert all(tuple(row) == SCORED_COLUMNS for row in rows)
    assert rows[1]["label"] is None and rows[1]["dense_rewards"] == [] and rows[1]["origin"] == ""
    with pytest.raises(ValueError, match="tests_run"):
        scored_row("t/3", "toy", "p", "c", tests_run=1)
    table = load_scored(write_scored(rows, tmp_path / "scored"))
    assert table.column_names == list(SCORED_COLUMNS)
    assert table.to_list() == rows


def test_load_scored_names_what_is_wrong(tmp_path):
    with pytest.raises(UsageError, match="run `wmtp score`"):
        load_scored(tmp_path / "missing")
    datasets.Dataset.from_dict({"prompt": ["p"], "completion": ["c"]}).save_to_disk(str(tmp_path / "no_reward"))
    with pytest.raises(UsageError, match=r"\['reward'\]"):
        load_scored(tmp_path / "no_reward")
