"""Building what a training stage trains: the model (optionally with LoRA), its critic, the optimiser."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from wmtp_cli.config import Recipe
from wmtp_cli.critic import ValueHead, ValueHeadConfig, has_value_head
from wmtp_cli.errors import UsageError

logger = logging.getLogger(__name__)


def load_model(recipe: Recipe, device: torch.device):
    """The recipe's MTP model on ``device`` and the number of heads to use (``model.n_future`` or all)."""
    from wmtp_cli.model.loading import heads_to_use, load_causal_lm

    if recipe.model is None:
        raise UsageError("the recipe has no model section: set model.path to a converted model folder")
    model = load_causal_lm(recipe.model, device=str(device))
    return model, heads_to_use(model, recipe.model)


def new_value_head(model, recipe: Recipe) -> ValueHead:
    c = recipe.critic
    config = ValueHeadConfig(
        input_size=model.config.hidden_size, hidden_size=c.hidden_size, activation=c.activation,
        surprise=c.surprise, attention_heads=c.attention_heads,
    )  # fmt: skip
    return ValueHead(config)


def load_value_head(folder: Path, model) -> ValueHead:
    if not has_value_head(folder):
        raise UsageError(
            f"wmtp.weighting=critic needs a trained critic, and {folder} has none: run `wmtp train-critic` with "
            "this recipe first, or set wmtp.critic_path"
        )
    return ValueHead.load(folder, expect_input_size=model.config.hidden_size)


def add_lora(model, recipe: Recipe):
    """Wrap ``model``'s linear layers named in ``wmtp.lora_target_modules`` with LoRA adapters (peft).

    Returns the peft model; its ``base_model.model`` is ``model`` itself with adapters injected, so
    the training code keeps calling the MTP model's own methods. Only the adapters stay trainable.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UsageError(
            "wmtp.lora_r needs the peft package: pip install 'wmtp-cli[lora]' (or pip install peft)"
        ) from None
    config = LoraConfig(
        r=recipe.wmtp.lora_r,
        lora_alpha=recipe.wmtp.lora_alpha,
        lora_dropout=recipe.wmtp.lora_dropout,
        target_modules=list(recipe.wmtp.lora_target_modules),
        bias="none",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise UsageError(f"cannot add LoRA adapters: {str(exc).splitlines()[0]}") from None


def enable_activation_checkpointing(model) -> None:
    """Recompute each block's activations in the backward pass (non-reentrant, so it nests in the head loop)."""
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def freeze_unused_heads(model, n_active: int) -> None:
    """Heads past ``n_active`` get no loss; frozen, they keep their weights and DDP does not wait for them."""
    for head in model.heads[n_active:]:
        head.requires_grad_(False)


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not on norms, biases or the critic's scale)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]
