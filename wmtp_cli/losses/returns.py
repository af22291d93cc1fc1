"""Return targets R_t and the critic loss L_VF (DESIGN.md section 3).

Indices are 0-based. In row b the completion occupies the trained positions (labels != -100) from ``first``
to ``last``; T_c = last. The completion states are t in [first-1, last] (first-1 is the last prompt token,
the state before the first completion token; clipped to 0 when first = 0); a row with no trained token has
none. r is the sequence reward, r_j the dense reward for emitting x_j (0 outside [first, last]), V_j = V(h_j)
used with stopgrad. With c = gamma * lam, for every completion state t:

    R_t = sum_{j=t+1}^{T_c} c^{j-t-1} (r_j + gamma (1 - lam) V_j) + c^{T_c-t} r         (0^0 = 1)

which is the lambda-return R_t = r_{t+1} + gamma ((1 - lam) V_{t+1} + lam R_{t+1}), R_{T_c} = r, unrolled.

- ``mc`` (lam = 1):  R_t = sum_{j>t} gamma^{j-t-1} r_j + gamma^{T_c-t} r  (= r for gamma = 1, no dense rewards)
- ``td0`` (lam = 0): R_t = r_{t+1} + gamma V_{t+1} for t < T_c, R_{T_c} = r
- ``gae``: lam = gae_lambda in between.

L_VF = mean over completion states of (V_t - R_t)^2.
"""

from __future__ import annotations

import torch

from wmtp_cli.losses.mtp import IGNORE_INDEX

__all__ = ["RETURN_KINDS", "completion_states", "lambda_returns", "return_targets", "value_loss", "value_loss_sum"]

RETURN_KINDS = ("mc", "td0", "gae")


def _first_last(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first, last, has_any) per row: first/last trained position (T / -1 for a row with none). Each (B,)."""
    B, T = labels.shape
    trained = labels != IGNORE_INDEX  # (B, T)
    pos = torch.arange(T, device=labels.device).expand(B, T)  # (B, T)
    if T == 0:  # amin/amax refuse an empty axis
        none = torch.zeros(B, dtype=torch.long, device=labels.device)
        return none, none - 1, none.bool()
    first = torch.where(trained, pos, T).amin(dim=1)
    last = torch.where(trained, pos, -1).amax(dim=1)
    return first, last, trained.any(dim=1)


def completion_states(labels: torch.Tensor) -> torch.Tensor:
    """True for t in [max(first-1, 0), last] of each row, all False for a row with no trained token. (B, T)."""
    if labels.dim() != 2:
        raise ValueError(f"labels must be (B, T), got shape {tuple(labels.shape)}")
    first, last, has_any = _first_last(labels)
    pos = torch.arange(labels.shape[1], device=labels.device)  # (T,)
    start = (first - 1).clamp(min=0)
    return (pos >= start[:, None]) & (pos <= last[:, None]) & has_any[:, None]  # (B, T)


def lambda_returns(
    values: torch.Tensor,
    reward: torch.Tensor | float,
    labels: torch.Tensor,
    dense_rewards: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> torch.Tensor:
    """Lambda-returns R (B, T), float32, detached, 0 outside the completion states (formula in module doc).

    values (B, T); reward (B,) (a scalar is broadcast); labels (B, T); dense_rewards (B, T) or None (all 0).
    Computed in float64 as one (B, T) x (T, T) matmul with the discount matrix D[t, j] = c^{j-t-1} (j > t),
    so memory is O(T^2) but no loop over positions is needed.
    """
    if labels.dim() != 2 or values.shape != labels.shape:
        raise ValueError(f"values {tuple(values.shape)} and labels {tuple(labels.shape)} must both be (B, T)")
    if dense_rewards is not None and dense_rewards.shape != labels.shape:
        raise ValueError(f"dense_rewards {tuple(dense_rewards.shape)} must match labels {tuple(labels.shape)}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    B, T = labels.shape
    dev, f64 = labels.device, torch.float64
    r = torch.as_tensor(reward, dtype=f64, device=dev).detach().reshape(-1)
    if r.numel() == 1:
        r = r.expand(B)
    if r.shape != (B,):
        raise ValueError(f"reward must be a scalar or (B,) = ({B},), got shape {tuple(r.shape)}")

    first, last, _ = _first_last(labels)
    states = completion_states(labels)  # (B, T)
    pos = torch.arange(T, device=dev)  # (T,)
    # dense rewards and bootstrap values only enter through j in (t, T_c], i.e. inside [first, last]
    inside = (pos >= first[:, None]) & (pos <= last[:, None])  # (B, T)
    u = gamma * (1.0 - lam) * values.detach().to(f64)
    if dense_rewards is not None:
        u = u + dense_rewards.detach().to(f64)
    u = torch.where(inside, u, torch.zeros_like(u))  # (B, T)

    c = torch.tensor(gamma * lam, dtype=f64, device=dev)
    # integer exponents >= 0 keep torch.pow exact at c = 0 (0^0 = 1, 0^m = 0)
    if gamma * lam == 1.0:  # mc with gamma = 1 (the default): sum_{j>t} u_j, a reverse cumulative sum
        future = u.flip(1).cumsum(1).flip(1) - u  # (B, T)
    elif gamma * lam == 0.0:  # td0: u_{t+1}
        future = torch.cat([u[:, 1:], torch.zeros_like(u[:, :1])], dim=1)  # (B, T)
    else:  # D[t, j] = c^{j-t-1} for j > t, a Toeplitz matrix gathered from the T powers of c
        powers = torch.pow(c, torch.arange(T, device=dev))  # (T,) float64; integer exponents, so 0^0 = 1
        D = powers[(pos[None, :] - pos[:, None] - 1).clamp_(min=0)].triu_(1)  # (T, T)
        future = u @ D.T  # (B, T): sum_j D[t, j] u_j
    terminal = torch.pow(c, (last[:, None] - pos[None, :]).clamp(min=0).to(f64)) * r[:, None]  # (B, T)
    R = torch.where(states, future + terminal, torch.zeros_like(future))
    return R.to(torch.float32)


def return_targets(
    kind: str,
    values: torch.Tensor,
    reward: torch.Tensor | float,
    labels: torch.Tensor,
    dense_rewards: torch.Tensor | None = None,
    gamma: float = 1.0,
    gae_lambda: float = 0.95,
) -> torch.Tensor:
    """R_t of ``kind`` in {"mc", "td0", "gae"}: :func:`lambda_returns` with lam = 1, 0, ``gae_lambda``."""
    lams = {"mc": 1.0, "td0": 0.0, "gae": gae_lambda}
    if kind not in lams:
        raise ValueError(f"unknown return kind {kind!r}; expected one of {', '.join(RETURN_KINDS)}")
    return lambda_returns(values, reward, labels, dense_rewards, gamma=gamma, lam=lams[kind])


def value_loss_sum(
    values: torch.Tensor, targets: torch.Tensor, states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over states of (V_t - R_t)^2 in float32, differentiable in V; number of states, int64)."""
    if not values.shape == targets.shape == states.shape:
        raise ValueError(
            f"values {tuple(values.shape)}, targets {tuple(targets.shape)} and states {tuple(states.shape)} differ"
        )
    diff = values.float() - targets.detach().float()
    # where, not a multiply, so a non-finite value outside the states cannot leak in as NaN
    total = torch.where(states, diff, torch.zeros_like(diff)).square().sum()
    return total, states.sum()


def value_loss(values: torch.Tensor, targets: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """L_VF: mean over completion states of (V_t - R_t)^2; 0 when there is no state."""
    total, count = value_loss_sum(values, targets, states)
    return total / count.clamp(min=1)
