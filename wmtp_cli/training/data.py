"""Training batches from the scored data of ``wmtp score``.

Each scored row (prompt, completion, reward, dense_rewards) becomes one example: token ids, labels
(-100 on the prompt; see :mod:`wmtp_cli.data.examples`), the sequence reward and the dense rewards
placed on the positions of the completion tokens they belong to.

Batches are drawn by :class:`StepBatches`, a pure function of the optimiser step: step ``s`` of a run
with ``W`` processes, ``A`` micro-batches per step and ``B`` sequences per micro-batch reads the
``G = B * W * A`` examples at ``[s * G, (s + 1) * G)`` of an endless stream of epochs, each epoch a
fresh permutation seeded by ``(seed, epoch)`` with its last partial step left out. Micro-batch ``m``
of process ``p`` is the ``p``-th slice of ``B`` in the ``m``-th block of ``B * W``. So resuming needs
only the step number, and one process with ``B * W`` sequences per micro-batch sees exactly the
examples that ``W`` processes see together.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset

from wmtp_cli.config import DataConfig
from wmtp_cli.data.examples import pad_batch, tokenize_examples
from wmtp_cli.errors import UsageError
from wmtp_cli.losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

COLUMNS = ("input_ids", "attention_mask", "labels", "reward", "dense_rewards", "task_id")


def training_examples(scored: Dataset, tokenizer: Any, data: DataConfig, needs_rewards: bool = True) -> Dataset:
    """Token ids, labels, reward and dense rewards for each scored row (see the module docstring).

    With ``data.packing`` the examples are joined into rows of exactly ``data.max_length`` tokens, which no
    longer have one reward each: only a run that reads no reward (``needs_rewards=False``: uniform or ntp
    weighting with no ``wmtp.min_reward``, as pretraining is) may pack; its rows get reward 1 and no dense
    rewards.
    """
    if data.packing and needs_rewards:
        raise UsageError(
            "data.packing joins examples and drops their rewards, which this stage needs (the critic, critic or "
            "dense_reward weighting, or wmtp.min_reward): set data.packing=false"
        )
    if "dense_rewards" not in scored.column_names:
        scored = scored.add_column("dense_rewards", [[] for _ in range(len(scored))])
    if "task_id" not in scored.column_names:
        scored = scored.add_column("task_id", [str(i) for i in range(len(scored))])
    examples = tokenize_examples(
        scored, tokenizer, data.max_length, data.truncation, packing=data.packing, num_proc=data.num_proc,
        shuffle=False,
    )  # fmt: skip
    if len(examples) == 0:
        raise UsageError(f"every example is longer than data.max_length={data.max_length} and was dropped")
    if data.packing:
        n = len(examples)
        examples = examples.add_column("reward", [1.0] * n).add_column("dense_rewards", [[] for _ in range(n)])
        examples = examples.add_column("task_id", [f"packed-{i}" for i in range(n)])
    return examples.select_columns(list(COLUMNS))


def split_by_task(examples: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out about ``val_fraction`` of the problems (with all their completions) for validation.

    A problem goes to validation when a hash of (seed, task_id) falls below ``val_fraction``, so the
    split does not depend on the data's order. At least one problem lands on each side.
    """
    tasks = sorted(set(examples["task_id"]))
    if len(tasks) < 2:
        raise UsageError("validating the critic needs completions of at least 2 problems in the scored data")

    def draw(task: str) -> float:
        digest = hashlib.sha256(f"{seed}:{task}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranked = sorted(tasks, key=draw)
    n_val = min(max(1, round(val_fraction * len(tasks))), len(tasks) - 1)
    held_out = set(ranked[:n_val])
    is_val = [t in held_out for t in examples["task_id"]]
    train = examples.select([i for i, v in enumerate(is_val) if not v])
    val = examples.select([i for i, v in enumerate(is_val) if v])
    logger.info("critic split: %d problems (%d examples) train, %d (%d) validation",
                len(tasks) - n_val, len(train), n_val, len(val))  # fmt: skip
    return train, val


def collate(features: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) ``input_ids``/``attention_mask``/``labels``, ``reward`` (B,) and ``dense`` (B, T).

    ``dense[b, j]`` is the dense reward for emitting token j: the completion's i-th dense reward lands
    on the i-th trained position (EOS and tokens past the list get 0; a truncated completion keeps the
    rewards of its kept tokens).
    """
    batch = pad_batch([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in features], pad_id)
    labels = batch["labels"]
    dense = torch.zeros(labels.shape, dtype=torch.float32)  # (B, T)
    for row, feature in enumerate(features):
        values = feature.get("dense_rewards") or []
        trained = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        if values and len(trained):
            first = int(trained[0])
            end = min(first + len(values), int(trained[-1]) + 1)
            dense[row, first:end] = torch.tensor(values[: end - first], dtype=torch.float32)
    batch["dense"] = dense
    batch["reward"] = torch.tensor([float(f["reward"]) for f in features], dtype=torch.float32)  # (B,)
    return batch


class StepBatches:
    """Micro-batch indices for one process, from a given optimiser step on (see the module docstring)."""

    def __init__(
        self,
        n_examples: int,
        batch_size: int,
        grad_accum: int = 1,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ):
        self.n, self.B, self.A, self.W, self.rank = n_examples, batch_size, grad_accum, world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self._cached: tuple[int, torch.Tensor] | None = None
        self.per_step = batch_size * world_size * grad_accum
        self.steps_per_epoch = n_examples // self.per_step
        if self.steps_per_epoch == 0:
            raise UsageError(
                f"one optimiser step reads {self.per_step} examples (batch_size {batch_size} x {world_size} "
                f"process(es) x grad_accum {grad_accum}) but the data has only {n_examples}: lower the batch size"
            )

    def _order(self, epoch: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != epoch:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._cached = (epoch, torch.randperm(self.n, generator=generator))
            else:
                self._cached = (epoch, torch.arange(self.n))
        return self._cached[1]

    def step(self, step: int) -> list[list[int]]:
        """The ``A`` micro-batches (lists of example indices) this process reads at optimiser step ``step``."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        start = index * self.per_step
        out = []
        for micro in range(self.A):
            offset = start + micro * self.B * self.W + self.rank * self.B
            out.append(order[offset : offset + self.B].tolist())
        return out

    def from_step(self, step: int) -> Iterator[list[list[int]]]:
        while True:
            yield self.step(step)
            step += 1


def rows(dataset: Dataset, indices: list[int]) -> list[dict[str, Any]]:
    """The rows at ``indices`` as dictionaries, read in one call."""
    columns = dataset[indices]
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def shard(n_examples: int, world_size: int, rank: int) -> list[int]:
    """The indices process ``rank`` evaluates: every ``world_size``-th example, so the shards cover all once."""
    return list(range(rank, n_examples, world_size))
