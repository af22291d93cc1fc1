"""Reward models and dense rewards: scores, prefix differences, attention credit, offset alignment."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_reward_model, tiny_tokenizer
from torch.testing import assert_close

from wmtp_cli.data.tokenization import completion_token_spans
from wmtp_cli.rewards.alignment import spread_over_spans
from wmtp_cli.rewards.reward_model import RewardModel

PROMPT = "def add(a, b):\n"
COMPLETION = "    return a + b  # naïve\n"


def test_spread_over_identical_spans_is_identity():
    spans = [(0, 2), (2, 5), (5, 9)]
    assert spread_over_spans([1.0, -2.0, 0.5], spans, spans) == [1.0, -2.0, 0.5]


def test_spread_splits_by_character_overlap_and_keeps_the_total():
    source = [(0, 4), (4, 6), (6, 6)]  # the last span is empty (a special token): it carries nothing
    target = [(0, 1), (1, 5), (5, 6)]
    out = spread_over_spans([4.0, 2.0, 9.0], source, target)
    assert out == pytest.approx([1.0, 3.0 + 1.0, 1.0])
    assert sum(out) == pytest.approx(6.0)


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    return make_tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm")


def test_scores_do_not_depend_on_batching(reward_model_dir):
    rm = RewardModel(str(reward_model_dir), batch_size=3)
    prompts = [PROMPT, "x = 1\n", PROMPT, "print('hi')\n"]
    completions = [COMPLETION, "y = 2\n", "    pass\n", ""]
    batched = rm.score(prompts, completions)
    single = [
        RewardModel(str(reward_model_dir), batch_size=1).score([p], [c])[0]
        for p, c in zip(prompts, completions, strict=True)
    ]
    assert_close(torch.tensor(batched), torch.tensor(single), atol=1e-4, rtol=1e-4)
    assert len(set(batched)) > 1


def test_two_label_model_scores_are_probabilities(tmp_path):
    rm = RewardModel(str(make_tiny_reward_model(tmp_path / "rm2", num_labels=2)))
    scores = rm.score([PROMPT, "x"], [COMPLETION, "y"])
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_prefix_rewards_telescope_to_the_score_change(reward_model_dir, tmp_path):
    rm = RewardModel(str(reward_model_dir))
    policy = tiny_tokenizer(tmp_path)
    dense = rm.prefix_rewards(PROMPT, COMPLETION, policy)
    assert len(dense) == len(completion_token_spans(policy, PROMPT, COMPLETION)[0])
    whole, prompt_only = rm.score_texts([PROMPT + COMPLETION, PROMPT])
    assert sum(dense) == pytest.approx(whole - prompt_only, abs=1e-4)


def test_attention_rewards_spread_the_sequence_reward(reward_model_dir, tmp_path):
    rm = RewardModel(str(reward_model_dir), attention=True)
    policy = tiny_tokenizer(tmp_path)
    dense = rm.attention_rewards(PROMPT, COMPLETION, 0.75, policy)
    assert len(dense) == len(completion_token_spans(policy, PROMPT, COMPLETION)[0])
    assert sum(dense) == pytest.approx(0.75, abs=1e-5)
    assert all(d >= 0 for d in dense) and len(set(dense)) > 2


def test_missing_reward_model_is_a_usage_error(tmp_path):
    from wmtp_cli.errors import UsageError

    with pytest.raises(UsageError, match=r"reward.reward_model .*nothing-here does not exist"):
        RewardModel(str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"without config\.json"):
        RewardModel(str(tmp_path / "empty"))
