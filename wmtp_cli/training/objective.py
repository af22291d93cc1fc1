"""The stage-2 objective L_total = L_WMTP + lambda * L_VF for one micro-batch, as one module.

The loss is computed inside :meth:`WMTPObjective.forward` so that accelerate can wrap the model and
its critic together (DDP, FSDP or DeepSpeed see one module, and one ``backward``).

Normalisation across micro-batches and processes. DESIGN.md defines L_WMTP as a mean over the
positions that carry weight and L_VF as a mean over completion states, of the whole optimiser step's
batch. The training loop counts both over every micro-batch of every process before the forward
(:func:`loss_counts`; they depend on the labels only) and passes ``scale = W * A / count``: with the
``1/A`` of gradient accumulation and the ``1/W`` of data-parallel averaging, the gradient is exactly
that of the global means, however the batch is split.

The memory-efficient head loop (``memory_efficient=True``, DESIGN.md section 2): the trunk runs once;
each head's forward (block, norm, unembedding, cross-entropy) runs under activation checkpointing, so
it keeps none of its (B, T, V) logits; the backward pass then recomputes and differentiates one head
at a time, accumulating each head's gradient at ``h_trunk`` before the trunk's backward runs once.
Peak memory holds one head's logits instead of n. The price is a second forward of each head (a
block and the unembedding: a few percent of a 7B step); in exchange it is a single ``backward`` of a
single graph, which DDP, FSDP, DeepSpeed and gradient accumulation handle as they handle any model.
``memory_efficient=False`` is the plain path: all (B, T, n, V) logits at once, for checking.

The value head reads ``h_trunk`` undetached, so L_VF's gradient reaches the trunk as well (a shared
trunk, as in actor-critic training with one network): ``lambda_vf`` sets how much the critic's loss
shapes the language model, not only how fast the critic learns. The weights themselves are detached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from wmtp_cli.critic import critic_values
from wmtp_cli.losses import (
    IGNORE_INDEX,
    completion_states,
    head_targets,
    per_head_cross_entropy,
    return_targets,
    token_deltas,
    valid_heads,
    value_loss_sum,
    weighted_head_loss,
)
from wmtp_cli.losses.diagnostics import SUM_NAMES, diagnostic_sums
from wmtp_cli.weightings import Weighting, WeightOptions
from wmtp_cli.weightings import weighting as weighting_named


@dataclass
class ObjectiveSettings:
    weighting: str = "critic"  # critic | uniform | ntp | dense_reward
    n_future: int = 4
    temperature: float = 1.0
    abs_delta: bool = False
    zscore_delta: bool = False
    uniform_mix: float = 0.0
    lambda_vf: float = 0.1
    train_critic: bool = True
    min_reward: float | None = None
    return_target: str = "mc"
    gamma: float = 1.0
    gae_lambda: float = 0.95
    memory_efficient: bool = True

    @property
    def scheme(self) -> Weighting:
        """The registered :class:`~wmtp_cli.weightings.Weighting` named by ``weighting``."""
        return weighting_named(self.weighting)

    @property
    def n_active(self) -> int:
        """Heads that receive weight: head 1 alone for ntp, all n otherwise."""
        return self.scheme.active_heads(self.n_future)

    @property
    def uses_critic(self) -> bool:
        return self.scheme.uses_critic

    @property
    def trains_critic(self) -> bool:
        return self.uses_critic and self.train_critic and self.lambda_vf > 0


def lm_labels(labels: torch.Tensor, reward: torch.Tensor, min_reward: float | None) -> torch.Tensor:
    """``labels`` with the rows whose reward is below ``min_reward`` left out of the LM loss."""
    if min_reward is None:
        return labels
    return labels.masked_fill((reward < min_reward)[:, None], IGNORE_INDEX)  # (B, T)


def loss_counts(batch: dict[str, torch.Tensor], settings: ObjectiveSettings) -> torch.Tensor:
    """[positions carrying LM weight, completion states for L_VF] of one micro-batch (int64, shape (2,))."""
    labels = lm_labels(batch["labels"], batch["reward"], settings.min_reward)
    weighted = valid_heads(labels, settings.n_active).any(-1).sum()
    states = completion_states(batch["labels"]).sum() if settings.trains_critic else torch.zeros((), dtype=torch.long)
    return torch.stack([weighted, states])


def metric_names(n_future: int) -> list[str]:
    """Names of the entries of the metric-sum vector that :meth:`WMTPObjective.forward` returns."""
    per_head = [f"{what}_{k}" for what in ("ce_sum", "ce_count", "weight_sum") for k in range(1, n_future + 1)]
    # nonfinite_*: how many of the critic's values and of the weights are NaN or infinite (a NaN stop says which);
    # diag_*: the sums behind the weight diagnostics (wmtp_cli.losses.diagnostics)
    return ["lm_sum", "lm_count", "vf_sum", "vf_count", "entropy_sum", "tokens", *per_head, "nonfinite_values",
            "nonfinite_weights", *(f"diag_{name}" for name in SUM_NAMES)]  # fmt: skip


class WMTPObjective(nn.Module):
    """The MTP model and (for ``weighting=critic``) its value head, returning the stage-2 loss."""

    def __init__(self, model: nn.Module, value_head: nn.Module | None, settings: ObjectiveSettings):
        super().__init__()
        if settings.uses_critic and value_head is None:
            raise ValueError("weighting=critic needs a value head")
        self.model = model
        self.value_head = value_head if settings.uses_critic else None
        self.settings = settings

    def weights(self, values: torch.Tensor | None, batch: dict, labels: torch.Tensor) -> torch.Tensor:
        """Detached per-head weights (B, T, n) for the LM loss, by the registered weighting."""
        s = self.settings
        options = WeightOptions(s.temperature, s.abs_delta, s.zscore_delta, s.uniform_mix)
        return s.scheme.weights(self._importance(values, batch), labels, s.n_future, options)

    def forward(
        self, batch: dict[str, torch.Tensor], lm_scale: torch.Tensor | float, vf_scale: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, metric_sums)``: the scaled loss to backpropagate and detached sums named by :func:`metric_names`."""
        s = self.settings
        labels = lm_labels(batch["labels"], batch["reward"], s.min_reward)
        # Right padding: causal attention alone keeps real tokens from seeing pads, and takes the fast kernels.
        h_trunk, rotary, _ = self.model.embed_and_trunk(batch["input_ids"])  # (B, T, d)

        values = None
        vf_sum = vf_count = torch.zeros((), device=h_trunk.device)
        if s.uses_critic:
            with torch.set_grad_enabled(torch.is_grad_enabled() and s.trains_critic):
                values = critic_values(self.value_head, self.model, batch["input_ids"], h_trunk, rotary)  # (B, T)
            if s.trains_critic:
                targets = return_targets(
                    s.return_target, values, batch["reward"], batch["labels"], batch["dense"], s.gamma, s.gae_lambda
                )
                vf_sum, vf_count = value_loss_sum(values, targets, completion_states(batch["labels"]))
        weights = self.weights(values, batch, labels).to(h_trunk.device)  # (B, T, n)

        per_head = self._head_losses(h_trunk, rotary, labels, weights)
        lm_sum = sum(weighted for weighted, _, _ in per_head)
        loss = lm_sum * lm_scale + s.lambda_vf * vf_sum * vf_scale

        with torch.no_grad():
            carrying = weights.sum(-1) > 0  # (B, T)
            w = weights[carrying]  # (N, n)
            entropy = -(w * torch.log(w.clamp_min(1e-30))).sum()
            padding = torch.zeros(s.n_future - len(per_head), device=h_trunk.device, dtype=torch.float64)
            nonfinite_values = (~torch.isfinite(values)).sum() if values is not None else torch.zeros(())
            metrics = torch.cat([
                torch.stack([lm_sum.detach().double(), carrying.sum().double(), vf_sum.detach().double(),
                             torch.as_tensor(vf_count, device=h_trunk.device).double(), entropy.double(),
                             (batch["attention_mask"].sum()).double()]),
                torch.cat([torch.stack([ce.double() for _, ce, _ in per_head]), padding]),
                torch.cat([torch.stack([torch.as_tensor(c).double() for _, _, c in per_head]), padding]),
                w.sum(0).double(),
                torch.stack([nonfinite_values.double().to(h_trunk.device), (~torch.isfinite(weights)).sum().double()]),
                diagnostic_sums(weights, valid_heads(labels, s.n_future), labels,
                                self._importance(values, batch)).double(),
            ])  # fmt: skip
        return loss, metrics

    def _importance(self, values: torch.Tensor | None, batch: dict) -> torch.Tensor | None:
        """What the weights are a softmax of, per token (delta, or the dense rewards): the diagnostics' |delta|."""
        source = self.settings.scheme.importance
        if source == "critic":
            return token_deltas(values.detach())
        if source == "dense_rewards":
            return batch["dense"]
        return None

    def _head_losses(self, h_trunk, rotary, labels, weights) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(sum_t w CE, sum of CE, valid positions)`` of each active head."""
        n_active = self.settings.n_active
        if not self.settings.memory_efficient:
            logits = torch.stack(
                [self.model.head_logits(k, h_trunk, rotary) for k in range(n_active)], dim=2
            )  # (B, T, n_active, V)
            targets = head_targets(labels, self.settings.n_future)[..., :n_active]  # (B, T, n_active)
            ce = per_head_cross_entropy(logits, targets)  # (B, T, n_active)
            valid = targets != IGNORE_INDEX
            return [
                ((weights[..., k] * ce[..., k]).sum(), ce[..., k].detach().sum(), valid[..., k].sum())
                for k in range(n_active)
            ]

        def one_head(k: int, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: torch.Tensor):
            logits = self.model.head_logits(k, h, (cos, sin))  # (B, T, V), freed after the loss
            return weighted_head_loss(logits, labels, w, k + 1)

        out = []
        for k in range(n_active):
            if torch.is_grad_enabled():
                weighted, ce, count = checkpoint(one_head, k, h_trunk, *rotary, weights[..., k], use_reentrant=False)
            else:
                weighted, ce, count = one_head(k, h_trunk, *rotary, weights[..., k])
            out.append((weighted, ce.detach(), count))
        return out
