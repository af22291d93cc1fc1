"""The critic: a small MLP value head V(h_t) on the trunk's last hidden state.

    V_t = w2 . act(W1 norm(h_t) + b1) + b2          # h_t: (B, T, d) -> V: (B, T)

``h_t`` is the residual stream, unnormalised and of a scale that varies from model to model, so the
head normalises its input (RMSNorm, as the model's own heads do). The head computes in float32
whatever the model's dtype: it is small, and its output feeds softmax weights and an MSE.

The output layer starts at zero, so a fresh critic predicts the same value everywhere, which makes
its weights exactly the uniform MTP weights until it has learnt something.

A head is saved as ``value_head.safetensors`` and ``value_head.json`` (its :class:`ValueHeadConfig`)
in a folder: a critic run's folder, or a fine-tuned model's folder beside the model's own files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_write_text

WEIGHTS_NAME = "value_head.safetensors"
CONFIG_NAME = "value_head.json"
ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass
class ValueHeadConfig:
    input_size: int  # the model's hidden size d
    hidden_size: int = 1024
    activation: str = "gelu"
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of {sorted(ACTIVATIONS)}")


class ValueHead(nn.Module):
    """V(h): RMSNorm, Linear(d, hidden), activation, Linear(hidden, 1)."""

    def __init__(self, config: ValueHeadConfig):
        super().__init__()
        self.config = config
        self.norm_weight = nn.Parameter(torch.ones(config.input_size))
        self.fc = nn.Linear(config.input_size, config.hidden_size)
        self.act = ACTIVATIONS[config.activation]()
        self.out = nn.Linear(config.hidden_size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values (B, T) in float32 from trunk states ``hidden`` (B, T, d) of any dtype."""
        if hidden.shape[-1] != self.config.input_size:
            raise ValueError(f"the value head reads {self.config.input_size}-wide states, got {hidden.shape[-1]}")
        h = hidden.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.config.norm_eps) * self.norm_weight
        return self.out(self.act(self.fc(h))).squeeze(-1)  # (B, T)

    def save(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the head's weights and config into ``folder`` (each file through a temporary name)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else self.state_dict()
        tmp = folder / f".{WEIGHTS_NAME}.tmp"
        save_file({k: v.detach().float().contiguous().cpu() for k, v in state.items()}, str(tmp))
        tmp.replace(folder / WEIGHTS_NAME)
        atomic_write_text(folder / CONFIG_NAME, json.dumps(asdict(self.config), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, expect_input_size: int | None = None) -> ValueHead:
        """The head saved in ``folder``; ``expect_input_size`` checks it fits the model it will read."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise UsageError(
                f"no value head in {folder} (expected {CONFIG_NAME} and {WEIGHTS_NAME}): "
                "train one with `wmtp train-critic`"
            )
        try:
            config = ValueHeadConfig(**json.loads((folder / CONFIG_NAME).read_text()))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{folder / CONFIG_NAME} is not a value-head config: {exc}") from None
        if expect_input_size is not None and config.input_size != expect_input_size:
            raise UsageError(
                f"the critic in {folder} reads {config.input_size}-wide hidden states but the model's hidden size "
                f"is {expect_input_size}: it was trained on a different model"
            )
        head = cls(config)
        try:
            head.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        except RuntimeError as exc:
            raise UsageError(f"{folder / WEIGHTS_NAME} does not match its config: {str(exc).splitlines()[0]}") from None
        return head


def has_value_head(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()
