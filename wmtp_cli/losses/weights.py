"""Per-(position, head) weights for the WMTP loss (DESIGN.md section 3).

Indices are 0-based tensor indices. ``labels`` (B, T) is unshifted, as transformers' causal-LM labels:
``labels[b, j] = x_j`` where token j is trained and ``-100`` where it is not (prompt, padding).

- Head k (k = 1..n, head 1 = next token) at position t predicts x_{t+k}. Its index in the last dimension of
  every (B, T, n) tensor here is k-1.
- Valid heads: K_t = {k : t+k < T and labels[b, t+k] != -100}.
- Token importance: delta_j = V_j - V_{j-1} for j >= 1, delta_0 = 0 (never used, since t+k >= 1).
- Critic weights: w_{t,k} = exp(delta_{t+k}/tau) / sum_{k' in K_t} exp(delta_{t+k'}/tau) for k in K_t,
  0 otherwise; a position with K_t empty gets all zeros.
- Options, applied in this order: importance |delta| (``abs_delta``); per-sequence z-score over the trained
  positions (``zscore``); uniform mixing w <- (1 - eps) w + eps/|K_t| on K_t (``uniform_mix``).
- Baselines on the same path: ``uniform`` w_{t,k} = 1/|K_t| (the critic's weights for a constant V, bit for
  bit) and ``ntp`` w_{t,1} = 1 where head 1 is valid.

All weights are detached: no gradient flows into the critic through them.
"""

from __future__ import annotations

import torch

from wmtp_cli.losses.mtp import IGNORE_INDEX, _stack_ahead

__all__ = [
    "critic_weights",
    "head_targets",
    "ntp_weights",
    "token_deltas",
    "uniform_weights",
    "valid_heads",
    "weight_statistics",
    "weights_from_importance",
]


def _check_labels(labels: torch.Tensor, n_future: int) -> None:
    if n_future < 1:
        raise ValueError(f"n_future must be >= 1, got {n_future}")
    if labels.dim() != 2:
        raise ValueError(f"labels must be (B, T), got shape {tuple(labels.shape)}")


def head_targets(labels: torch.Tensor, n_future: int) -> torch.Tensor:
    """Targets of every head: out[b, t, k-1] = labels[b, t+k] where t+k < T, else -100. (B, T, n) long."""
    _check_labels(labels, n_future)
    return _stack_ahead(labels, n_future, IGNORE_INDEX)


def valid_heads(labels: torch.Tensor, n_future: int) -> torch.Tensor:
    """out[b, t, k-1] is True iff k is in K_t: t+k < T and labels[b, t+k] != -100. (B, T, n) bool."""
    return head_targets(labels, n_future) != IGNORE_INDEX


def token_deltas(values: torch.Tensor) -> torch.Tensor:
    """delta[b, j] = V[b, j] - V[b, j-1] for j >= 1, delta[b, 0] = 0. (B, T) -> (B, T)."""
    if values.dim() != 2:
        raise ValueError(f"values must be (B, T), got shape {tuple(values.shape)}")
    # prepending column 0 makes delta_0 = V_0 - V_0, an exact +0
    return torch.diff(values, dim=1, prepend=values[:, :1])  # (B, T)


def _masked_softmax(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``valid``; exactly 0 elsewhere, all 0 where nothing is valid.

    uniform_weights and the critic path both go through here, so a constant critic reproduces uniform bit
    for bit.
    """
    x = x.masked_fill(~valid, float("-inf"))
    m = x.amax(dim=-1, keepdim=True)
    # a row with no valid head has max -inf; shifting by 0 keeps exp(-inf) = 0 instead of NaN
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(x - m)
    s = e.sum(dim=-1, keepdim=True)
    # s >= 1 wherever a head is valid (the max contributes exp(0)); elsewhere e = 0, so 0 / tiny = 0
    return e / s.clamp(min=torch.finfo(s.dtype).tiny)


def _zscore(imp: torch.Tensor, trained: torch.Tensor, eps: float) -> torch.Tensor:
    """(imp - mean) / (std + eps) per row, with mean and population std over the trained positions only.

    A row with <= 1 trained position is only centred (divided by 1): its std is 0 by definition, and
    dividing by eps would blow a lone delta up to an arbitrary scale.
    """
    m = trained.to(imp.dtype)
    cnt = m.sum(dim=1, keepdim=True)  # (B, 1)
    mean = (imp * m).sum(dim=1, keepdim=True) / cnt.clamp(min=1)
    var = ((imp - mean).square() * m).sum(dim=1, keepdim=True) / cnt.clamp(min=1)
    scale = torch.where(cnt > 1, var.sqrt() + eps, torch.ones_like(var))
    return (imp - mean) / scale


def weights_from_importance(
    importance: torch.Tensor,
    labels: torch.Tensor,
    n_future: int,
    temperature: float = 1.0,
    *,
    abs_delta: bool = False,
    zscore: bool = False,
    uniform_mix: float = 0.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Head weights (B, T, n) from a per-token importance (B, T) that plays delta_j.

    Steps: detach; |.| if ``abs_delta``; per-row z-score over trained positions if ``zscore``; gather
    imp[b, t+k] for each head; divide by ``temperature``; softmax over k in K_t (0 outside K_t, all 0 where
    K_t is empty); if ``uniform_mix`` = eps_mix > 0, w <- (1 - eps_mix) w + eps_mix / |K_t| on K_t.
    Computed and returned in float64 for float64 importance, float32 otherwise. No gradient.
    """
    _check_labels(labels, n_future)
    if importance.shape != labels.shape:
        raise ValueError(
            f"importance shape {tuple(importance.shape)} does not match labels shape {tuple(labels.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix}")

    dtype = torch.float64 if importance.dtype == torch.float64 else torch.float32
    imp = importance.detach().to(dtype)
    if abs_delta:
        imp = imp.abs()
    if zscore:
        imp = _zscore(imp, labels != IGNORE_INDEX, eps)

    valid = valid_heads(labels, n_future)  # (B, T, n)
    x = _stack_ahead(imp, n_future, 0.0) / temperature  # (B, T, n)
    w = _masked_softmax(x, valid)
    if uniform_mix > 0:
        size = valid.sum(dim=-1, keepdim=True).clamp(min=1).to(dtype)  # (B, T, 1): |K_t|
        w = torch.where(valid, (1.0 - uniform_mix) * w + uniform_mix / size, torch.zeros_like(w))
    return w


def critic_weights(
    values: torch.Tensor, labels: torch.Tensor, n_future: int, temperature: float = 1.0, **options: float
) -> torch.Tensor:
    """WMTP weights from critic values V (B, T): w_{t,k} = softmax_{k in K_t}(delta_{t+k} / tau). (B, T, n).

    ``options`` are :func:`weights_from_importance`'s keyword options (``abs_delta``, ``zscore``,
    ``uniform_mix``); V is used detached.
    """
    return weights_from_importance(token_deltas(values.detach()), labels, n_future, temperature, **options)


def uniform_weights(labels: torch.Tensor, n_future: int) -> torch.Tensor:
    """Plain MTP: w_{t,k} = 1/|K_t| on K_t, 0 elsewhere. (B, T, n) float32.

    Same masked softmax as the critic path (of zeros), so it equals critic_weights for a constant V exactly.
    """
    valid = valid_heads(labels, n_future)  # (B, T, n)
    return _masked_softmax(torch.zeros(valid.shape, dtype=torch.float32, device=labels.device), valid)


def ntp_weights(labels: torch.Tensor, n_future: int) -> torch.Tensor:
    """Next-token prediction only: w_{t,1} = 1 where head 1 is valid, every other weight 0. (B, T, n) float32."""
    valid = valid_heads(labels, n_future)  # (B, T, n)
    head1 = torch.arange(n_future, device=labels.device) == 0  # (n,)
    return (valid & head1).to(torch.float32)


def weight_statistics(weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summaries of weights (B, T, n) over the positions that carry weight (sum_k w_{t,k} > 0).

    - ``mean_per_head`` (n,): mean of w_{t,k} over those positions.
    - ``entropy``: mean over those positions of -sum_k w_{t,k} log w_{t,k} (0 log 0 = 0).
    - ``positions``: their count (int64).

    With no such position both means are 0, not NaN.
    """
    w = weights.detach()
    active = w.sum(dim=-1) > 0  # (B, T)
    count = active.sum()
    denom = count.clamp(min=1).to(w.dtype)
    a = active.unsqueeze(-1).to(w.dtype)  # (B, T, 1)
    mean_per_head = (w * a).sum(dim=(0, 1)) / denom
    ent = -torch.xlogy(w, w).sum(dim=-1)  # (B, T); xlogy gives 0 log 0 = 0
    entropy = (ent * active.to(w.dtype)).sum() / denom
    return {"mean_per_head": mean_per_head, "entropy": entropy, "positions": count}
