"""Weighted multi-token-prediction cross-entropy (L_WMTP of DESIGN.md section 3).

Indices are 0-based. ``labels`` (B, T) is unshifted (transformers' causal-LM convention, -100 = not trained).
Head k (k = 1..n) at position t predicts x_{t+k}, so its target is labels[b, t+k] (-100 where t+k >= T), and

    CE_{t,k} = -log softmax(logits[b, t, k-1])[labels[b, t+k]]            (0 where the target is -100)
    L_WMTP   = sum_{b,t,k} w_{t,k} CE_{t,k} / #{(b, t) : sum_k w_{t,k} > 0}

The normaliser counts the positions that carry weight. For critic and uniform weights that is exactly
{t : K_t nonempty}; for ntp weights it is the positions whose next token is trained, so ``weighted_mtp_loss``
with ``ntp_weights`` equals head 1's causal-LM loss,
``F.cross_entropy(logits[:, :-1, 0].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)``.
Weights are always used detached; CE is computed in float32 whatever the logits' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "per_head_cross_entropy",
    "weighted_head_loss",
    "weighted_mtp_loss",
    "weighted_mtp_loss_sum",
]

IGNORE_INDEX = -100
"""The label of a position that is not trained (transformers' convention); the one definition."""


def _ahead(x: torch.Tensor, k: int, fill: float | int) -> torch.Tensor:
    """x[:, t+k] where t+k < T, else ``fill``: (B, T) -> (B, T)."""
    B, T = x.shape
    pad = x.new_full((B, min(k, T)), fill)
    return torch.cat([x[:, k:], pad], dim=1)  # (B, T)


def _stack_ahead(x: torch.Tensor, n_future: int, fill: float | int) -> torch.Tensor:
    """x[:, t+k] for k = 1..n on a new last axis: (B, T) -> (B, T, n)."""
    return torch.stack([_ahead(x, k, fill) for k in range(1, n_future + 1)], dim=-1)  # (B, T, n)


def per_head_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE of every head, float32, 0 where the target is -100.

    logits (B, T, n, V) with targets (B, T, n) -> (B, T, n); or one head, logits (B, T, V) with targets (B, T)
    -> (B, T). Upcasting to float32 keeps bf16 logits from losing the log-softmax's precision.
    """
    if logits.dim() != targets.dim() + 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a trailing vocabulary axis"
        )
    ce = F.cross_entropy(
        logits.float().flatten(0, -2),  # (B*T*n, V)
        targets.flatten(),  # (B*T*n,)
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return ce.view(targets.shape)  # (B, T, n) or (B, T)


def weighted_mtp_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_{b,t,k} w_{t,k} CE_{t,k}, #{(b, t) : sum_k w_{t,k} > 0}).

    logits (B, T, n, V), labels (B, T), weights (B, T, n). The total is a float32 scalar differentiable in the
    logits; the count is an int64 scalar. Summing before dividing lets callers accumulate over micro-batches.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, n, V), got shape {tuple(logits.shape)}")
    B, T, n, _ = logits.shape
    if labels.shape != (B, T) or weights.shape != (B, T, n):
        raise ValueError(
            f"expected labels (B, T) = {(B, T)} and weights (B, T, n) = {(B, T, n)}, "
            f"got {tuple(labels.shape)} and {tuple(weights.shape)}"
        )
    targets = _stack_ahead(labels, n, IGNORE_INDEX)  # (B, T, n)
    ce = per_head_cross_entropy(logits, targets)  # (B, T, n)
    w = weights.detach().to(torch.float32)
    total = (w * ce).sum()
    count = (w.sum(dim=-1) > 0).sum()
    return total, count


def weighted_mtp_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L_WMTP = sum w CE / #{positions carrying weight}; 0 (not NaN) for a batch with no weight at all."""
    total, count = weighted_mtp_loss_sum(logits, labels, weights)
    return total / count.clamp(min=1)


def weighted_head_loss(
    head_logits: torch.Tensor, labels: torch.Tensor, head_weights: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One head's share of L_WMTP, for loops that materialise one head's logits at a time.

    head_logits (B, T, V) of head k (1-based), labels (B, T), head_weights (B, T) = weights[..., k-1].
    Returns (sum_t w_{t,k} CE_{t,k} (float32, differentiable), sum of CE_{t,k} over head k's valid positions
    (detached, for logging), number of those positions (int64)). Summing the first over k and dividing by the
    count of :func:`weighted_mtp_loss_sum` gives :func:`weighted_mtp_loss`.
    """
    if k < 1:
        raise ValueError(f"k is 1-based (head 1 = next token), got {k}")
    if head_logits.dim() != 3 or labels.shape != head_logits.shape[:2] or head_weights.shape != labels.shape:
        raise ValueError(
            f"expected head_logits (B, T, V), labels (B, T), head_weights (B, T); got {tuple(head_logits.shape)}, "
            f"{tuple(labels.shape)}, {tuple(head_weights.shape)}"
        )
    targets = _ahead(labels, k, IGNORE_INDEX)  # (B, T)
    ce = per_head_cross_entropy(head_logits, targets)  # (B, T)
    weighted = (head_weights.detach().to(torch.float32) * ce).sum()
    return weighted, ce.detach().sum(), (targets != IGNORE_INDEX).sum()
