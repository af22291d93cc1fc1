"""Training batches: the step-addressed sampler, dense rewards on the right tokens, the task split, metrics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from datasets import Dataset

from wmtp_cli.errors import UsageError
from wmtp_cli.losses import IGNORE_INDEX
from wmtp_cli.training.data import StepBatches, collate, rows, shard, split_by_task
from wmtp_cli.training.metrics import pearson, roc_auc


def test_processes_together_read_what_one_process_reads():
    one = StepBatches(40, batch_size=4, grad_accum=2, world_size=1, seed=3)
    two = [StepBatches(40, batch_size=2, grad_accum=2, world_size=2, rank=r, seed=3) for r in range(2)]
    for step in range(12):  # crosses epoch boundaries (5 steps of 8 per epoch)
        for micro in range(2):
            assert one.step(step)[micro] == two[0].step(step)[micro] + two[1].step(step)[micro]


def test_an_epoch_reads_every_example_once_and_epochs_differ():
    batches = StepBatches(10, batch_size=3, seed=0)  # 3 steps per epoch; one example left out each epoch
    epochs = [sorted(i for s in range(e * 3, e * 3 + 3) for i in batches.step(s)[0]) for e in range(2)]
    assert all(len(set(e)) == 9 for e in epochs)
    assert [batches.step(s) for s in range(3)] != [batches.step(s) for s in range(3, 6)]


def test_resuming_at_a_step_reads_the_same_batches():
    batches = StepBatches(25, batch_size=2, grad_accum=3, seed=1)
    straight = list(itertools.islice(batches.from_step(0), 9))
    assert list(itertools.islice(StepBatches(25, 2, 3, seed=1).from_step(5), 4)) == straight[5:]


def test_too_little_data_for_one_step_is_a_usage_error():
    with pytest.raises(UsageError, match="lower the batch size"):
        StepBatches(5, batch_size=4, world_size=2)


def test_shards_cover_every_example_once():
    assert sorted(shard(7, 3, 0) + shard(7, 3, 1) + shard(7, 3, 2)) == list(range(7))


def test_collate_puts_dense_rewards_on_their_completion_tokens():
    features = [
        {"input_ids": [1, 5, 6, 7, 8, 2], "attention_mask": [1] * 6, "labels": [-100, -100, 6, 7, 8, 2],
         "reward": 1.0, "dense_rewards": [0.1, 0.2, 0.3]},
        {"input_ids": [1, 5, 9], "attention_mask": [1] * 3, "labels": [-100, 5, 9],
         "reward": 0.0, "dense_rewards": [0.4, 0.5, 0.6, 0.7]},  # a truncated completion: extra rewards dropped
        {"input_ids": [1, 5, 9], "attention_mask": [1] * 3, "labels": [-100, 5, 9], "reward": 0.5,
         "dense_rewards": []},
    ]  # fmt: skip
    batch = collate(features, pad_id=0)
    expected = torch.tensor([[0, 0, 0.1, 0.2, 0.3, 0], [0, 0.4, 0.5, 0, 0, 0], [0] * 6])
    torch.testing.assert_close(batch["dense"], expected)
    assert batch["labels"][1].tolist() == [-100, 5, 9, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["reward"].tolist() == [1.0, 0.0, 0.5]


def test_split_holds_out_whole_problems():
    data = Dataset.from_dict({"task_id": [f"t{i // 3}" for i in range(30)], "x": list(range(30))})
    train, val = split_by_task(data, 0.2, seed=0)
    assert not set(train["task_id"]) & set(val["task_id"])
    assert len(set(val["task_id"])) == 2 and len(train) + len(val) == 30
    assert split_by_task(data, 0.2, seed=0)[1]["x"] == val["x"]
    with pytest.raises(UsageError, match="at least 2 problems"):
        split_by_task(Dataset.from_dict({"task_id": ["a", "a"]}), 0.5, 0)


def test_rows_reads_dicts_in_order():
    data = Dataset.from_dict({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert rows(data, [2, 0]) == [{"a": 3, "b": "z"}, {"a": 1, "b": "x"}]


def brute_force_auc(scores: list[float], positive: list[bool]) -> float:
    pairs = [(p, n) for p, ok_p in zip(scores, positive, strict=True) if ok_p
             for n, ok_n in zip(scores, positive, strict=True) if not ok_n]  # fmt: skip
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_auc_matches_pair_counting_with_ties():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        scores = torch.randint(0, 5, (30,), generator=generator).float()  # many ties
        positive = torch.rand(30, generator=generator) < 0.4
        if positive.all() or not positive.any():
            continue
        assert roc_auc(scores, positive) == pytest.approx(brute_force_auc(scores.tolist(), positive.tolist()))
    assert math.isnan(roc_auc(torch.ones(3), torch.ones(3)))


def test_pearson():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(pearson(x, torch.ones(4)))
