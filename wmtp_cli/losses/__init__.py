"""WMTP losses: head weights, weighted multi-token cross-entropy, return targets and the critic loss."""

from __future__ import annotations

from wmtp_cli.losses.mtp import (
    IGNORE_INDEX,
    per_head_cross_entropy,
    weighted_head_loss,
    weighted_mtp_loss,
    weighted_mtp_loss_sum,
)
from wmtp_cli.losses.returns import (
    RETURN_KINDS,
    completion_states,
    lambda_returns,
    return_targets,
    value_loss,
    value_loss_sum,
)
from wmtp_cli.losses.weights import (
    critic_weights,
    head_targets,
    ntp_weights,
    token_deltas,
    uniform_weights,
    valid_heads,
    weight_statistics,
    weights_from_importance,
)

__all__ = [
    "IGNORE_INDEX",
    "RETURN_KINDS",
    "completion_states",
    "critic_weights",
    "head_targets",
    "lambda_returns",
    "ntp_weights",
    "per_head_cross_entropy",
    "return_targets",
    "token_deltas",
    "uniform_weights",
    "valid_heads",
    "value_loss",
    "value_loss_sum",
    "weight_statistics",
    "weighted_head_loss",
    "weighted_mtp_loss",
    "weighted_mtp_loss_sum",
    "weights_from_importance",
]
