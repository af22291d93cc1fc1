"""The value head's options beyond DESIGN.md: token surprise as an input and a causal attention layer."""

from __future__ import annotations

import pytest
import torch
from test_training_objective import HIDDEN, VOCAB, N, make_batch, run, tiny_model
from torch.testing import assert_close

from wmtp_cli.critic import ValueHead, ValueHeadConfig, critic_values, token_surprise
from wmtp_cli.training.objective import ObjectiveSettings, WMTPObjective


def extended_head(seed: int = 1, surprise: bool = True, attention_heads: int = 2) -> ValueHead:
    torch.manual_seed(seed)
    config = ValueHeadConfig(input_size=HIDDEN, hidden_size=16, surprise=surprise, attention_heads=attention_heads)
    head = ValueHead(config)
    torch.nn.init.normal_(head.out.weight, std=0.5)  # a fresh head is constant; make delta non-trivial
    return head


@pytest.mark.parametrize("chunk", [256, 2])
def test_token_surprise_is_head_one_negative_log_likelihood_of_the_next_token(chunk, monkeypatch):
    import wmtp_cli.critic.value_head as value_head

    monkeypatch.setattr(value_head, "SURPRISE_CHUNK", chunk)  # 2: positions unembedded in 3 chunks
    model = tiny_model().eval()
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h, rotary, _ = model.embed_and_trunk(ids)
        logits = model.head_logits(0, h, rotary)  # (B, T, V)
    surprise = token_surprise(model, h, rotary, ids)
    expected = torch.zeros(2, 7)
    for b in range(2):
        for t in range(1, 7):
            expected[b, t] = -torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]]
    assert_close(surprise, expected)
    one = ids[:, :1]
    h, rotary, _ = model.embed_and_trunk(one)
    assert torch.equal(token_surprise(model, h, rotary, one), torch.zeros(2, 1))  # nothing predicts the first token


@pytest.mark.parametrize("surprise, heads", [(True, 0), (False, 2), (True, 2)])
def test_extended_heads_are_causal(surprise, heads):
    """V_t depends on tokens 1..t only: changing the last tokens leaves earlier values as they were."""
    model, head = tiny_model().eval(), extended_head(surprise=surprise, attention_heads=heads)
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(4))
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % VOCAB
    values = []
    with torch.no_grad():
        for x in (ids, changed):
            h, rotary, _ = model.embed_and_trunk(x)
            values.append(critic_values(head, model, x, h, rotary))
    assert_close(values[0][0, :6], values[1][0, :6])
    assert not torch.allclose(values[0][0, 6:], values[1][0, 6:])


def test_surprise_changes_the_value_when_the_model_expected_another_token():
    model, head = tiny_model().eval(), extended_head(attention_heads=0)
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        h, rotary, _ = model.embed_and_trunk(ids)
        surprise = token_surprise(model, h, rotary, ids)
        assert not torch.allclose(head(h, surprise), head(h, surprise + 3.0))
    with pytest.raises(ValueError, match="reads token surprise"):
        head(h)


def test_fresh_extended_head_is_constant_and_round_trips(tmp_path):
    fresh = ValueHead(ValueHeadConfig(input_size=HIDDEN, hidden_size=8, surprise=True, attention_heads=2))
    h, s = torch.randn(2, 5, HIDDEN), torch.rand(2, 5)
    assert torch.equal(fresh(h, s), torch.zeros(2, 5))
    head = extended_head()
    head.save(tmp_path / "critic")
    loaded = ValueHead.load(tmp_path / "critic", expect_input_size=HIDDEN)
    assert loaded.config == head.config and torch.equal(loaded(h, s), head(h, s))


def test_stage_two_with_an_extended_critic_trains_it_and_keeps_the_weights_detached():
    settings = ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.5)
    head = extended_head()
    objective = WMTPObjective(tiny_model(), head, settings)
    loss, _ = run(objective, make_batch())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    no_vf = WMTPObjective(tiny_model(), extended_head(), ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0))
    loss, _ = run(no_vf, make_batch())
    loss.backward()
    assert all(p.grad is None for p in no_vf.value_head.parameters())


def test_recipe_rejects_attention_heads_that_do_not_divide_the_width():
    from wmtp_cli.config import recipe_from_dict
    from wmtp_cli.errors import RecipeError

    with pytest.raises(RecipeError, match=r"critic\.attention_heads"):
        recipe_from_dict({"critic": {"hidden_size": 30, "attention_heads": 4}})
