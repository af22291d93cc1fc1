"""Training examples: token ids and labels from (prompt, completion) rows, and the batch collator.

Tokenisation. ``prompt + completion`` is tokenised as one text (BOS added as the tokenizer does)
and split where the prompt's characters end (:mod:`wmtp_cli.data.tokenization` says why); EOS is
appended to the completion.

``labels`` follow transformers: the token id on completion positions (EOS included), ``-100`` on
prompt positions. Columns other than ``prompt`` and ``completion`` (``task_id``, ``reward``, ...) are
kept, except with packing.

Truncation (``data.truncation``) of an example longer than ``max_length``:

- ``prompt_left``: drop prompt tokens from the start, keeping BOS, until it fits; if the completion
  alone is too long, keep only BOS (or, with no BOS, the prompt's last token) and cut the
  completion's end;
- ``right``: cut the end of prompt + completion;
- ``drop``: leave the example out.

A completion whose end is cut loses its EOS (the model is not taught to stop there). An example left
with no completion token (``right`` with a prompt of ``max_length`` tokens or more) is dropped too.
Counts of truncated and dropped examples are logged at INFO.

Packing (``data.packing``): the examples, in their shuffled order, are concatenated and cut into rows
of exactly ``max_length`` tokens (rows carry ``input_ids``, ``attention_mask``, ``labels`` only).
Each example keeps its own labels, and its first token's label is ``-100``, so no head-1 loss predicts
one example from another. Attention is not reset at example boundaries and no ``position_ids`` are
returned: positions run on across a row, as in the pretraining of models that concatenate documents,
and an example may attend to the ones before it. An example can be split across two rows. Each map
batch of :data:`PACK_BATCH` examples leaves out its last, partial row. Heads k >= 2 can reach into the
next example only when its prompt is shorter than k tokens.

Order: with ``shuffle`` the examples are shuffled with ``Dataset.shuffle(seed)`` (the same seed gives
the same order); the tokenisation itself is a ``Dataset.map`` cached by fingerprint, independent of
the seed.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Literal

from datasets import Dataset

from wmtp_cli.data.tokenization import split_prompt_completion
from wmtp_cli.errors import UsageError
from wmtp_cli.losses.mtp import IGNORE_INDEX

logger = logging.getLogger(__name__)


PACK_BATCH = 1000
"""Examples packed together in one map batch."""

FIT, TRUNCATED, DROPPED = 0, 1, 2
_STATUS = "_truncation"
_NAMES = {FIT: "fit", TRUNCATED: "truncated", DROPPED: "dropped"}

Truncation = Literal["prompt_left", "right", "drop"]


def completion_rows(problems: Dataset) -> Dataset:
    """One (task_id, prompt, completion, correct) row for each correct and each incorrect solution."""

    def expand(batch: dict[str, list]) -> dict[str, list]:
        rows: dict[str, list] = {"task_id": [], "prompt": [], "completion": [], "correct": []}
        for task_id, prompt, good, bad in zip(
            batch["task_id"], batch["prompt"], batch["solutions"], batch["incorrect_solutions"], strict=True
        ):
            for completion, correct in [(c, True) for c in good] + [(c, False) for c in bad]:
                rows["task_id"].append(task_id)
                rows["prompt"].append(prompt)
                rows["completion"].append(completion)
                rows["correct"].append(correct)
        return rows

    return problems.map(expand, batched=True, remove_columns=problems.column_names, desc="Listing completions")


def fit(
    prompt: list[int], completion: list[int], max_length: int, truncation: Truncation, bos_id: int | None
) -> tuple[list[int], list[int], int]:
    """``prompt`` and ``completion`` ids cut to ``max_length`` together, and FIT, TRUNCATED or DROPPED."""
    if len(prompt) + len(completion) <= max_length:
        return prompt, completion, FIT
    if truncation == "drop":
        return prompt, completion, DROPPED
    if truncation == "right":
        prompt = prompt[:max_length]
        completion = completion[: max_length - len(prompt)]
    elif truncation == "prompt_left":
        keep = 1 if prompt and prompt[0] == bos_id else 0  # BOS stays
        least = min(len(prompt), 1)  # BOS, or without one the prompt's last token
        if least + len(completion) <= max_length:
            cut = len(prompt) + len(completion) - max_length  # prompt tokens to drop after BOS
            prompt = prompt[:keep] + prompt[keep + cut :]
        else:  # the completion alone is too long: keep one prompt token, cut the completion's end
            prompt = prompt[:1] if keep else prompt[-1:]
            completion = completion[: max_length - len(prompt)]
    else:
        raise ValueError(f"unknown truncation {truncation!r}; use prompt_left, right or drop")
    return prompt, completion, (TRUNCATED if completion else DROPPED)


def _tokenize(batch: dict[str, list], tokenizer: Any, max_length: int, truncation: Truncation) -> dict[str, list]:
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], _STATUS: []}
    for prompt, completion, _ in split_prompt_completion(tokenizer, batch["prompt"], batch["completion"]):
        prompt, completion, status = fit(
            prompt, [*completion, tokenizer.eos_token_id], max_length, truncation, tokenizer.bos_token_id
        )
        out["input_ids"].append(prompt + completion)
        out["attention_mask"].append([1] * (len(prompt) + len(completion)))
        out["labels"].append([IGNORE_INDEX] * len(prompt) + completion)
        out[_STATUS].append(status)
    return out


def _pack(batch: dict[str, list], max_length: int) -> dict[str, list]:
    ids: list[int] = []
    labels: list[int] = []
    for example_ids, example_labels in zip(batch["input_ids"], batch["labels"], strict=True):
        ids += example_ids
        labels += [IGNORE_INDEX, *example_labels[1:]]
    starts = range(0, len(ids) - max_length + 1, max_length)
    return {
        "input_ids": [ids[s : s + max_length] for s in starts],
        "attention_mask": [[1] * max_length for _ in starts],
        "labels": [labels[s : s + max_length] for s in starts],
    }


def tokenize_examples(
    dataset: Dataset,
    tokenizer: Any,
    max_length: int,
    truncation: Truncation = "prompt_left",
    packing: bool = False,
    num_proc: int = 1,
    seed: int = 0,
    shuffle: bool = True,
) -> Dataset:
    """``input_ids``, ``attention_mask`` and ``labels`` for each (prompt, completion) row of ``dataset``.

    See the module docstring for the tokenisation, truncation and packing rules.
    """
    _check_example_arguments(dataset, tokenizer, max_length, truncation)
    processes = min(num_proc, len(dataset))
    tokenized = _tokenize_and_fit(dataset, tokenizer, max_length, truncation, processes)
    if shuffle:
        tokenized = tokenized.shuffle(seed=seed)
    if not packing:
        return tokenized
    return _pack_rows(tokenized, max_length, processes)


def _check_example_arguments(dataset: Dataset, tokenizer: Any, max_length: int, truncation: Truncation) -> None:
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"examples need prompt and completion columns; missing {sorted(missing)}")
    if truncation not in ("prompt_left", "right", "drop"):
        raise ValueError(f"unknown truncation {truncation!r}; use prompt_left, right or drop")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (a prompt token and a completion token), got {max_length}")
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no EOS token, which ends every completion; give it one (eos_token)")


def _tokenize_and_fit(
    dataset: Dataset, tokenizer: Any, max_length: int, truncation: Truncation, processes: int
) -> Dataset:
    """Every example tokenised and cut to ``max_length``; the dropped ones left out, the counts logged."""
    replaced = [
        c for c in ("prompt", "completion", "input_ids", "attention_mask", "labels") if c in dataset.column_names
    ]
    tokenized = dataset.map(
        _tokenize,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "truncation": truncation},
        remove_columns=replaced,
        num_proc=processes if processes > 1 else None,
        desc="Tokenising examples",
    )
    counts = Counter(tokenized[_STATUS])
    logger.info(
        "tokenised %d examples to at most %d tokens (%s): %s",
        len(tokenized),
        max_length,
        truncation,
        ", ".join(f"{counts[s]} {_NAMES[s]}" for s in (FIT, TRUNCATED, DROPPED)),
    )
    if counts[DROPPED]:
        tokenized = tokenized.filter(lambda s: s != DROPPED, input_columns=[_STATUS])
    return tokenized.remove_columns(_STATUS)


def _pack_rows(tokenized: Dataset, max_length: int, processes: int) -> Dataset:
    """The examples concatenated in their order and cut into rows of exactly ``max_length`` tokens."""
    packed = tokenized.map(
        _pack,
        batched=True,
        batch_size=PACK_BATCH,
        fn_kwargs={"max_length": max_length},
        remove_columns=tokenized.column_names,
        num_proc=processes if processes > 1 else None,
        desc="Packing examples",
    )
    if len(packed) == 0:
        raise UsageError(
            f"packing {len(tokenized)} examples fills no row of {max_length} tokens; "
            "lower data.max_length or set data.packing=false"
        )
    logger.info("packed %d examples into %d rows of %d tokens", len(tokenized), len(packed), max_length)
    return packed


def pad_id_of(tokenizer: Any) -> int:
    """The id to pad with: the tokenizer's pad token, else EOS (Llama has no pad token; padded positions are
    neither attended to nor trained, so any id works)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def pad_batch(features: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad ``features`` to their longest row: ``pad_id`` in input_ids, 0 in attention_mask, -100 in labels.

    The collate function for a ``DataLoader`` (``functools.partial(pad_batch, pad_id=...)``). The
    caller picks ``pad_id`` (Llama has no pad token; any id works, as padded positions are masked and
    not trained). Those three become ``LongTensor`` (B, T); other numeric columns become tensors and
    the rest lists.
    """
    import torch

    if pad_id is None:
        raise ValueError("pad_batch needs a pad_id (the tokenizer has no pad token: pass e.g. its EOS id)")
    width = max(len(f["input_ids"]) for f in features)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch: dict[str, Any] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if key in fill:
            padded = [list(v) + [fill[key]] * (width - len(v)) for v in values]
            batch[key] = torch.tensor(padded, dtype=torch.long)  # (B, T)
        elif all(isinstance(v, (bool, int, float)) for v in values):
            batch[key] = torch.tensor(values)  # (B,)
        else:
            batch[key] = values
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(f["input_ids"]) for f in features])
        batch["attention_mask"] = (torch.arange(width)[None] < lengths[:, None]).long()  # (B, T)
    return batch
