"""How well each head predicts held-out reference solutions: cross-entropy and top-1 accuracy per head.

For every (prompt, reference solution) pair, tokenised as training examples are (prompt masked,
EOS appended; :mod:`wmtp_cli.data.examples`), head k at position t is scored on token t + k when
that token belongs to the solution (:func:`wmtp_cli.losses.head_targets`). The figures are means
over all scored tokens of all references (micro-averaged), so long solutions weigh more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from wmtp_cli.losses import IGNORE_INDEX, head_targets, per_head_cross_entropy


@dataclass
class HeadMetrics:
    head: int  # 1 = next token
    cross_entropy: float  # nats per token
    top1_accuracy: float
    tokens: int


@torch.no_grad()
def head_metrics(
    model,
    tokenizer,
    prompts: Sequence[str],
    solutions: Sequence[str],
    max_length: int = 2048,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[HeadMetrics]:
    """Per-head cross-entropy and top-1 accuracy of ``model`` on the ``solutions`` after their ``prompts``."""
    from datasets import Dataset

    from wmtp_cli.data.examples import pad_batch, pad_id_of, tokenize_examples

    examples = tokenize_examples(
        Dataset.from_dict({"prompt": list(prompts), "completion": list(solutions)}),
        tokenizer, max_length, truncation="prompt_left", shuffle=False,
    )  # fmt: skip
    n = model.config.n_future_tokens
    device = next(model.parameters()).device
    ce_sum = torch.zeros(n, dtype=torch.float64)
    correct = torch.zeros(n, dtype=torch.long)
    counts = torch.zeros(n, dtype=torch.long)
    pad = pad_id_of(tokenizer)
    for start in range(0, len(examples), batch_size):
        rows = examples.select(range(start, min(start + batch_size, len(examples))))
        batch = pad_batch([dict(r) for r in rows], pad)
        input_ids = batch["input_ids"].to(device)
        logits = model(input_ids, return_all_heads=True, use_cache=False).logits  # (B, T, n, V)
        targets = head_targets(batch["labels"].to(device), n)  # (B, T, n)
        valid = targets != IGNORE_INDEX
        ce_sum += per_head_cross_entropy(logits, targets).double().sum(dim=(0, 1)).cpu()
        correct += ((logits.argmax(-1) == targets) & valid).sum(dim=(0, 1)).cpu()
        counts += valid.sum(dim=(0, 1)).cpu()
        if progress is not None:
            progress(min(start + batch_size, len(examples)), len(examples))
    return [
        HeadMetrics(head=k + 1, cross_entropy=float(ce_sum[k]) / max(int(counts[k]), 1),
                    top1_accuracy=float(correct[k]) / max(int(counts[k]), 1), tokens=int(counts[k]))
        for k in range(n)
    ]  # fmt: skip
