"""The critic: a small MLP value head V(h_t) on the trunk's last hidden state.

    V_t = w2 . act(W1 norm(h_t) + b1) + b2          # h_t: (B, T, d) -> V: (B, T)

``h_t`` is the residual stream, unnormalised and of a scale that varies from model to model, so the
head normalises its input (RMSNorm, as the model's own heads do). The head computes in float32
whatever the model's dtype: it is small, and its output feeds softmax weights and an MSE.

Two options go beyond DESIGN.md's MLP on h_t (both off by default; ``critic.surprise`` and
``critic.attention_heads`` in a recipe):

- ``surprise``: the head also reads s_t = -log p_1(x_t | x_<t), how unexpected token t was to the
  model's own next-token head (:func:`token_surprise`, detached), as one more input feature.
- ``attention_heads > 0``: one causal self-attention layer (residual) between the MLP's two layers,
  so V_t can depend on the states of earlier tokens, not only on h_t. A per-position MLP can know
  that a solution went wrong only where the trunk itself carries that forward; a large pretrained
  trunk may, a small one does not (the tiny-code demo measures it: AUC 0.5 without).

Both keep V_t a function of tokens 1..t (causal), so delta_t = V_t - V_{t-1} keeps its meaning.

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
    surprise: bool = False  # also read -log p_1(x_t | x_<t)
    attention_heads: int = 0  # 0: the plain MLP; > 0: a causal self-attention layer inside it

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of {sorted(ACTIVATIONS)}")
        if self.attention_heads < 0 or (self.attention_heads and self.hidden_size % self.attention_heads):
            raise ValueError(f"hidden_size {self.hidden_size} must divide by attention_heads {self.attention_heads}")


class ValueHead(nn.Module):
    """V(h): RMSNorm, Linear(d, hidden), activation, [causal self-attention], Linear(hidden, 1)."""

    def __init__(self, config: ValueHeadConfig):
        super().__init__()
        self.config = config
        self.norm_weight = nn.Parameter(torch.ones(config.input_size))
        self.fc = nn.Linear(config.input_size + int(config.surprise), config.hidden_size)
        self.act = ACTIVATIONS[config.activation]()
        if config.attention_heads:
            self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
            self.attn_out = nn.Linear(config.hidden_size, config.hidden_size)
            self.fc2 = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: torch.Tensor, surprise: torch.Tensor | None = None) -> torch.Tensor:
        """Values (B, T) in float32 from trunk states ``hidden`` (B, T, d) of any dtype.

        ``surprise`` (B, T) is :func:`token_surprise`, needed exactly when the config says so.
        """
        c = self.config
        if hidden.shape[-1] != c.input_size:
            raise ValueError(f"the value head reads {c.input_size}-wide states, got {hidden.shape[-1]}")
        if (surprise is not None) != c.surprise:
            raise ValueError("this value head reads token surprise" if c.surprise else "this head reads no surprise")
        h = hidden.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + c.norm_eps) * self.norm_weight
        if c.surprise:
            h = torch.cat([h, surprise.float().unsqueeze(-1)], dim=-1)  # (B, T, d + 1)
        x = self.act(self.fc(h))  # (B, T, hidden)
        if c.attention_heads:
            x = x + self.attn_out(self._attention(x))
            x = self.act(self.fc2(x))
        return self.out(x).squeeze(-1)  # (B, T)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        heads = self.config.attention_heads
        q, k, v = self.qkv(x).view(B, T, 3, heads, H // heads).permute(2, 0, 3, 1, 4)  # 3 x (B, heads, T, H/heads)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, H/heads)
        return a.transpose(1, 2).reshape(B, T, H)

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


SURPRISE_CHUNK = 256  # positions unembedded at once: (B, 256, V) logits alive, never (B, T, V)


@torch.no_grad()
def token_surprise(model, h_trunk: torch.Tensor, rotary, input_ids: torch.Tensor) -> torch.Tensor:
    """s_t = -log p_1(x_t | x_<t) under the model's next-token head, (B, T) float32; s_0 = 0 (nothing predicts it)."""
    B, T = input_ids.shape
    surprise = torch.zeros(B, T, dtype=torch.float32, device=input_ids.device)
    if T < 2:
        return surprise
    h = model.heads[0](h_trunk, rotary)  # (B, T, d): head 1's block, once
    for start in range(0, T - 1, SURPRISE_CHUNK):
        end = min(start + SURPRISE_CHUNK, T - 1)
        logits = model.lm_head(model.norm(h[:, start:end])).float()  # (B, c, V): position t-1 predicts token t
        targets = input_ids[:, start + 1 : end + 1]  # (B, c)
        surprise[:, start + 1 : end + 1] = logits.logsumexp(-1) - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return surprise


def critic_values(value_head: nn.Module, model, input_ids: torch.Tensor, h_trunk: torch.Tensor, rotary) -> torch.Tensor:
    """V (B, T) of ``value_head`` (bare or DDP-wrapped) on the trunk states, with the inputs its config asks for."""
    config = getattr(value_head, "module", value_head).config
    surprise = token_surprise(model, h_trunk, rotary, input_ids) if config.surprise else None
    return value_head(h_trunk, surprise)


def has_value_head(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()
