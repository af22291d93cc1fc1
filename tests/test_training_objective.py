"""The stage-2 objective on tiny tensors: the head loop against the plain path and the loss formulas."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from wmtp_cli.critic import ValueHead, ValueHeadConfig
from wmtp_cli.losses import (
    IGNORE_INDEX,
    completion_states,
    critic_weights,
    return_targets,
    valid_heads,
    value_loss,
    weighted_mtp_loss,
    weights_from_importance,
)
from wmtp_cli.model import MTPConfig, MTPForCausalLM
from wmtp_cli.training.objective import ObjectiveSettings, WMTPObjective, loss_counts, metric_names

VOCAB, HIDDEN, N = 50, 32, 4


def tiny_model(n_future: int = N, seed: int = 0) -> MTPForCausalLM:
    torch.manual_seed(seed)
    config = MTPConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2 + n_future,
        num_attention_heads=4, n_future_tokens=n_future,
    )  # fmt: skip
    return MTPForCausalLM(config).float()


def value_head(seed: int = 1) -> ValueHead:
    torch.manual_seed(seed)
    head = ValueHead(ValueHeadConfig(input_size=HIDDEN, hidden_size=16))
    torch.nn.init.normal_(head.out.weight, std=0.5)  # a fresh head is constant; make delta non-trivial
    return head


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """3 rows of 12: prompts of 3, 5 and 2 tokens, right padding of 0, 2 and 4, a completion cut by the row end."""
    generator = torch.Generator().manual_seed(seed)
    B, T = 3, 12
    input_ids = torch.randint(0, VOCAB, (B, T), generator=generator)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    labels = input_ids.clone()
    for row, (prompt, pad) in enumerate([(3, 0), (5, 2), (2, 4)]):
        labels[row, :prompt] = IGNORE_INDEX
        if pad:
            labels[row, T - pad :] = IGNORE_INDEX
            attention_mask[row, T - pad :] = 0
    dense = torch.randn(B, T, generator=generator) * (labels != IGNORE_INDEX)
    return {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
        "reward": torch.tensor([1.0, 0.0, 0.5]), "dense": dense,
    }  # fmt: skip


def scales(batch: dict, settings: ObjectiveSettings) -> tuple[float, float]:
    lm_count, vf_count = loss_counts(batch, settings).tolist()
    return 1.0 / max(lm_count, 1), 1.0 / max(vf_count, 1)


def run(objective: WMTPObjective, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return objective(batch, *scales(batch, objective.settings))


WEIGHTINGS = [
    ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.5, temperature=0.7),
    ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.5, return_target="gae", gamma=0.9, uniform_mix=0.1),
    ObjectiveSettings(weighting="uniform", n_future=N),
    ObjectiveSettings(weighting="ntp", n_future=N),
    ObjectiveSettings(weighting="dense_reward", n_future=N, zscore_delta=True, min_reward=0.5),
]


@pytest.mark.parametrize("settings", WEIGHTINGS, ids=lambda s: f"{s.weighting}-{s.return_target}")
def test_head_loop_gives_the_plain_gradients(settings):
    batch = make_batch()
    grads = {}
    for efficient in (True, False):
        s = dataclasses.replace(settings, memory_efficient=efficient)
        objective = WMTPObjective(tiny_model(), value_head() if s.uses_critic else None, s)
        loss, _ = run(objective, batch)
        loss.backward()
        grads[efficient] = {n: p.grad for n, p in objective.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys() and grads[True]
    for name, plain in grads[False].items():
        difference = (grads[True][name] - plain).norm() / plain.norm().clamp_min(1e-30)
        assert difference <= 1e-5, (name, float(difference))


@pytest.mark.parametrize("efficient", [True, False])
def test_loss_is_l_wmtp_plus_lambda_l_vf(efficient):
    """The objective's loss against DESIGN.md's formulas, computed here from the model's all-head logits."""
    settings = ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.3, memory_efficient=efficient)
    model, head, batch = tiny_model(), value_head(), make_batch(1)
    loss, metrics = run(WMTPObjective(model, head, settings), batch)

    out = model(batch["input_ids"], return_all_heads=True, use_cache=False)
    values = head(out.trunk_hidden_states)
    weights = critic_weights(values, batch["labels"], N)
    targets = return_targets("mc", values, batch["reward"], batch["labels"], batch["dense"])
    expected = weighted_mtp_loss(out.logits, batch["labels"], weights) + 0.3 * value_loss(
        values, targets, completion_states(batch["labels"])
    )
    assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    named = dict(zip(metric_names(N), metrics, strict=True))
    assert named["tokens"] == batch["attention_mask"].sum()
    lm = weighted_mtp_loss(out.logits.detach(), batch["labels"], weights)
    # Both sides are float32 sums (in different orders; the metric vector keeps them in float64 from there on):
    # compare as float32 tensors, so float32 tolerances apply (Python floats would get float64's rtol=1e-7 and
    # atol=1e-7, tighter than one float32 ulp of the loss).
    assert named["lm_sum"].dtype == torch.float64 and lm.dtype == torch.float32
    assert_close((named["lm_sum"] / named["lm_count"]).float(), lm)


def test_ntp_is_the_causal_lm_loss_of_head_1():
    model, batch = tiny_model(), make_batch(2)
    settings = ObjectiveSettings(weighting="ntp", n_future=N)
    loss, _ = run(WMTPObjective(model, None, settings), batch)
    expected = model(batch["input_ids"], labels=batch["labels"], use_cache=False).loss
    assert_close(loss, expected, rtol=1e-6, atol=1e-6)


def test_dense_reward_weights_come_from_the_dense_rewards():
    model, batch = tiny_model(), make_batch(3)
    settings = ObjectiveSettings(weighting="dense_reward", n_future=N, temperature=0.5)
    objective = WMTPObjective(model, None, settings)
    expected = weights_from_importance(batch["dense"], batch["labels"], N, 0.5)
    assert torch.equal(objective.weights(None, batch, batch["labels"]), expected)


def test_a_registered_weighting_is_what_the_objective_uses(monkeypatch):
    """A weighting is one registered declaration: the objective looks it up by name, with no branch of its own."""
    from wmtp_cli import weightings

    def last_head(importance, labels, n_future, options):
        valid = valid_heads(labels, n_future)
        return (valid & (torch.arange(n_future) == n_future - 1)).float()

    custom = weightings.Weighting("last_head", "head n alone", "none", False, last_head)
    monkeypatch.setitem(weightings.WEIGHTINGS, "last_head", custom)
    model, batch = tiny_model(), make_batch(4)
    objective = WMTPObjective(model, None, ObjectiveSettings(weighting="last_head", n_future=N))
    weights = objective.weights(None, batch, batch["labels"])
    assert torch.equal(weights, last_head(None, batch["labels"], N, None))
    assert weights[..., : N - 1].sum() == 0 and weights[..., N - 1].sum() > 0
    _, metrics = run(objective, batch)
    named = dict(zip(metric_names(N), metrics.tolist(), strict=True))
    assert named["weight_sum_1"] == 0 and named[f"weight_sum_{N}"] > 0


def test_min_reward_keeps_low_reward_rows_out_of_the_lm_loss_only():
    batch = make_batch(4)  # rewards 1, 0, 0.5
    settings = ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=1.0, min_reward=0.75)
    lm_count, vf_count = loss_counts(batch, settings).tolist()
    everything = loss_counts(batch, ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=1.0)).tolist()
    assert vf_count == everything[1] and 0 < lm_count < everything[0]
    labels = batch["labels"].clone()
    labels[1:] = IGNORE_INDEX
    assert lm_count == loss_counts({**batch, "labels": labels}, settings)[0]


def test_critic_gets_no_gradient_through_the_weights():
    """With lambda_vf = 0 only the weights touch the critic, and they are detached."""
    settings = ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.0)
    head = value_head()
    objective = WMTPObjective(tiny_model(), head, settings)
    loss, _ = run(objective, make_batch())
    loss.backward()
    assert all(p.grad is None for p in head.parameters())
    assert objective.model.lm_head.weight.grad is not None


def test_loss_falls_when_overfitting_one_batch():
    settings = ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.5)
    objective = WMTPObjective(tiny_model(), value_head(), settings)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-2)
    batch = make_batch(5)
    losses = []
    for _ in range(40):
        loss, _ = run(objective, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses


def test_value_head_round_trip_and_mismatch(tmp_path):
    from wmtp_cli.errors import UsageError

    head = value_head()
    head.save(tmp_path / "critic")
    loaded = ValueHead.load(tmp_path / "critic", expect_input_size=HIDDEN)
    h = torch.randn(2, 5, HIDDEN, dtype=torch.bfloat16)
    assert torch.equal(loaded(h), head(h)) and loaded(h).dtype == torch.float32
    with pytest.raises(UsageError, match="different model"):
        ValueHead.load(tmp_path / "critic", expect_input_size=64)
    with pytest.raises(UsageError, match="no value head"):
        ValueHead.load(tmp_path / "nothing")


def test_fresh_value_head_is_constant_so_weights_start_uniform():
    head = ValueHead(ValueHeadConfig(input_size=HIDDEN, hidden_size=8))
    values = head(torch.randn(2, 6, HIDDEN))
    assert torch.equal(values, torch.zeros_like(values))


def test_activation_checkpointing_inside_the_head_loop_keeps_the_gradients():
    from wmtp_cli.training.setup import enable_activation_checkpointing

    grads = []
    for checkpointing in (False, True):
        model = tiny_model()
        if checkpointing:
            enable_activation_checkpointing(model)
        model.train()
        objective = WMTPObjective(model, value_head(), ObjectiveSettings(weighting="critic", n_future=N, lambda_vf=0.5))
        loss, _ = run(objective, make_batch())
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in objective.parameters() if p.grad is not None]))
    assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-7)
