"""Does a weighting differ from uniform at all? Four diagnostics of head weights (B, T, n).

Indices follow :mod:`wmtp_cli.losses.weights`: ``valid[b, t, k-1]`` is k in K_t (the n heads of
DESIGN.md section 3, whatever the weighting trains), and position t *carries* weight when K_t is
nonempty. Over the carrying positions:

- ``kl``: mean of KL(w_t || u_t), u_t uniform over K_t: sum_{k in K_t} w_{t,k} log(w_{t,k} |K_t|).
  0 for uniform weights; log |K_t| for a one-hot weight (ntp's, where head 1 is valid).
- ``effective_heads``: mean of exp(H(w_t)) / |K_t|, H the entropy (0 log 0 = 0). 1 for uniform weights,
  1 / |K_t| for one-hot ones.
- ``peaked``: the share of positions whose largest weight exceeds 2 / |K_t| (a head with more than
  twice its uniform share); never for uniform weights.
- ``delta_correlation``: Pearson correlation, over the trained tokens j >= 1, between the weight token j
  receives as a target, r_j = sum_k w_{j-k,k}, and its importance |delta_j|; None where either is
  constant (uniform weights, a constant critic) or no importance is given (no critic).

Training adds the sums of :func:`diagnostic_sums` over micro-batches and processes, then
:func:`diagnostics_from_sums` turns them into the four numbers, so a distributed run reports exactly
what one process would on the whole batch.
"""

from __future__ import annotations

import math

import torch

from wmtp_cli.losses.mtp import IGNORE_INDEX

SUM_NAMES = ("positions", "kl_sum", "effective_sum", "peaked_sum", "pairs", "x_sum", "y_sum", "xx_sum", "yy_sum",
             "xy_sum")  # fmt: skip
"""The entries of the vector :func:`diagnostic_sums` returns, in order."""
DIAGNOSTICS = ("kl", "effective_heads", "peaked", "delta_correlation")


def received_weights(weights: torch.Tensor) -> torch.Tensor:
    """r[b, j] = sum over k of w[b, j-k, k-1]: the total weight token j gets from the heads that predict it. (B, T)."""
    B, T, n = weights.shape
    out = torch.zeros(B, T, dtype=weights.dtype, device=weights.device)
    for k in range(1, min(n, T - 1) + 1):
        out[:, k:] += weights[:, : T - k, k - 1]
    return out


def diagnostic_sums(
    weights: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, importance: torch.Tensor | None = None
) -> torch.Tensor:
    """The additive statistics behind the diagnostics (float64, :data:`SUM_NAMES` order), for one batch.

    ``weights`` and ``valid`` (B, T, n); ``labels`` (B, T) as in training; ``importance`` (B, T) the
    per-token quantity the correlation is taken with (|delta|), or None.
    """
    w = weights.detach().to(torch.float64)
    carrying = valid.any(dim=-1)  # (B, T)
    size = valid.sum(dim=-1).to(torch.float64)  # (B, T): |K_t|
    safe = size.clamp(min=1).unsqueeze(-1)  # (B, T, 1)
    kl = torch.xlogy(w, w * safe).sum(dim=-1)  # (B, T); xlogy: 0 log 0 = 0
    entropy = -torch.xlogy(w, w).sum(dim=-1)
    effective = entropy.exp() / size.clamp(min=1)
    peaked = w.amax(dim=-1) > 2.0 / size.clamp(min=1)
    c = carrying.to(torch.float64)
    sums = [c.sum(), (kl * c).sum(), (effective * c).sum(), (peaked.to(torch.float64) * c).sum()]
    if importance is None:
        sums += [torch.zeros((), dtype=torch.float64)] * 6
    else:
        targets = labels != IGNORE_INDEX
        targets[:, 0] = False  # token 0 is never a head's target, and delta_0 means nothing
        x = received_weights(w)[targets]
        y = importance.detach().to(torch.float64).abs()[targets]
        sums += [torch.tensor(float(x.numel()), dtype=torch.float64, device=w.device), x.sum(), y.sum(),
                 (x * x).sum(), (y * y).sum(), (x * y).sum()]  # fmt: skip
    return torch.stack([s.to(w.device) for s in sums])


def diagnostics_from_sums(sums: torch.Tensor | list[float]) -> dict[str, float | None]:
    """The four diagnostics from summed :func:`diagnostic_sums` (None where there is nothing to average)."""
    s = dict(zip(SUM_NAMES, (float(v) for v in sums), strict=True))
    positions = s["positions"]
    out: dict[str, float | None] = {
        "kl": s["kl_sum"] / positions if positions else None,
        "effective_heads": s["effective_sum"] / positions if positions else None,
        "peaked": s["peaked_sum"] / positions if positions else None,
        "delta_correlation": None,
    }
    n = s["pairs"]
    if n > 1:
        cov = s["xy_sum"] - s["x_sum"] * s["y_sum"] / n
        var_x = s["xx_sum"] - s["x_sum"] ** 2 / n
        var_y = s["yy_sum"] - s["y_sum"] ** 2 / n
        # a variance at rounding level is a constant: uniform weights, or a critic that says nothing
        if var_x > 1e-12 * max(s["xx_sum"], 1e-300) and var_y > 1e-12 * max(s["yy_sum"], 1e-300):
            out["delta_correlation"] = cov / math.sqrt(var_x * var_y)
    return out


def logged_diagnostics(records: list[dict]) -> dict[str, float | None]:
    """The diagnostics a training run logged (``weight_<name>`` in metrics.jsonl), averaged over its log steps."""
    out: dict[str, float | None] = {}
    for name in DIAGNOSTICS:
        values = [r[f"weight_{name}"] for r in records if r.get(f"weight_{name}") is not None]
        out[name] = sum(values) / len(values) if values else None
    return out


def weight_diagnostics(
    weights: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, importance: torch.Tensor | None = None
) -> dict[str, float | None]:
    """The four diagnostics of one batch (see the module docstring)."""
    return diagnostics_from_sums(diagnostic_sums(weights, valid, labels, importance))
