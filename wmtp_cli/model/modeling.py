"""Meta's multi-token-prediction Llama (Gloeckle et al. 2024) as a transformers causal LM.

A shared trunk of Llama 2 blocks reads the tokens once; ``n_future_tokens`` head blocks each read
the trunk's output ``h_trunk`` (they are not chained) and share one RMSNorm and one unembedding:

    h_trunk  = trunk(embed(x))                      # (B, T, d)
    logits_k = lm_head(norm(head_k(h_trunk)))       # (B, T, V), head k predicts x_{t+k}

``model(input_ids).logits`` is head 1 (next token), so ``generate()`` and pipelines work as for any
causal LM; ``model(input_ids, return_all_heads=True).logits`` stacks all heads as (B, T, n, V).
The output's ``trunk_hidden_states`` is ``h_trunk``, the input of every head and of the critic.

Rotary embeddings rotate *halves* of each head (the transformers convention); the checkpoint
converter permutes Meta's ``wq``/``wk`` rows accordingly, which makes the two forms equal.

This file and ``configuration.py`` are copied into every model folder the toolkit writes (``auto_map``
in its config.json names them), so they import only torch, transformers and each other (relatively):
``from_pretrained(folder, trust_remote_code=True)`` then works where ``wmtp_cli`` is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration import MTPConfig

# Label of a position not trained: wmtp_cli.losses.mtp.IGNORE_INDEX (a test checks they agree), repeated
# here because this file imports nothing from wmtp_cli.
IGNORE_INDEX = -100


class RMSNorm(nn.Module):
    """Llama's RMSNorm: normalise in float32, cast back, then scale (as Meta's code does)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for the rotate-half form of rotary position embeddings.

    The frequencies are recomputed on each call (head_dim / 2 numbers) rather than kept as a
    buffer: a non-persistent buffer is left uninitialised when transformers builds the model on
    the meta device before loading weights.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=position_ids.device)
        inv_freq = 1.0 / (self.theta ** (exponents / self.head_dim))  # (hd/2,)
        freqs = position_ids[..., None].float() * inv_freq  # (B, T, hd/2)
        angles = torch.cat([freqs, freqs], dim=-1)  # (B, T, hd)
        return angles.cos()[:, None], angles.sin()[:, None]  # (B, 1, T, hd) each, float32


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, H, T, hd) in float32 like Meta's complex multiply, then cast back."""
    x32 = x.float()
    return (x32 * cos + _rotate_half(x32) * sin).to(x.dtype)


class Attention(nn.Module):
    """Causal self-attention with grouped-query heads, computed by SDPA."""

    def __init__(self, config: MTPConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx  # index into the KV cache
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        d = config.hidden_size
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        cos, sin = rotary
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, Hkv, S, hd): past and present keys
        if self.n_kv_heads != self.n_heads:
            repeats = self.n_heads // self.n_kv_heads
            k = k.repeat_interleave(repeats, dim=1)  # (B, H, S, hd)
            v = v.repeat_interleave(repeats, dim=1)
        # Without a mask the query block is the tail of the key block: causal within it, all of the past visible.
        is_causal = mask is None and T > 1 and k.shape[2] == T
        if mask is None and T > 1 and not is_causal:
            mask = _causal_mask(T, k.shape[2], x.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)  # (B, H, T, hd)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)) (Meta's w2(silu(w1 x) * w3 x))."""

    def __init__(self, config: MTPConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(GradientCheckpointingLayer):
    """One pre-norm Llama block; used for the trunk and for every head."""

    def __init__(self, config: MTPConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = FeedForward(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        h = x + self.self_attn(self.input_layernorm(x), rotary, mask, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


def _causal_mask(q_len: int, kv_len: int, device: torch.device) -> torch.Tensor:
    """Boolean (q_len, kv_len) mask for a query block that ends at the last key."""
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)
    return torch.arange(kv_len, device=device)[None, :] <= q_pos[:, None]


def padding_aware_mask(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """Boolean SDPA mask (B, 1, q_len, kv_len) from a 2-D padding mask over all keys (past and present).

    A key is visible when it is not padding and not in the future. Each query also sees itself, so
    that no row is fully masked (SDPA would return NaN there); such rows are padding whose outputs
    are ignored.
    """
    kv_len = attention_mask.shape[-1]
    causal = _causal_mask(q_len, kv_len, attention_mask.device)  # (q, kv)
    keep = causal[None] & attention_mask[:, None, :].bool()  # (B, q, kv)
    diagonal = (
        torch.arange(kv_len, device=attention_mask.device)[None, :]
        == torch.arange(kv_len - q_len, kv_len, device=attention_mask.device)[:, None]
    )
    return (keep | diagonal[None])[:, None]  # (B, 1, q, kv)


class StackedHeads:
    """The n head blocks as one computation, for inference: each projection's weights as one (n, out, in) tensor.

    Every head reads the same ``h_trunk``, so one batched matmul per projection (q, k and v fused, gate
    and up fused) serves all heads, and attention runs once with the heads folded into the batch. The
    numbers equal the per-head blocks' up to float rounding (a test holds them to 1e-5 in fp32). Built
    from the weights of the moment by :meth:`MTPForCausalLM.stacked_heads`, which rebuilds it when a
    head's weight changes; not for training (the stacked tensors are copies).
    """

    def __init__(self, heads: nn.ModuleList):
        first = heads[0].self_attn
        self.n = len(heads)
        self.first_layer = first.layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = first.n_heads, first.n_kv_heads, first.head_dim
        self.eps = heads[0].input_layernorm.eps

        def stack(get) -> torch.Tensor:
            return torch.stack([get(block).detach() for block in heads])

        def fused(*names: str):
            return lambda b: torch.cat([b.get_submodule(name).weight.T for name in names], dim=1)

        attn = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
        self.qkv = stack(fused(*attn)).contiguous()  # (n, d, (H + 2 Hkv) hd)
        self.o = stack(lambda b: b.self_attn.o_proj.weight.T).contiguous()  # (n, H hd, d)
        self.gate_up = stack(fused("mlp.gate_proj", "mlp.up_proj")).contiguous()  # (n, d, 2 ff)
        self.down = stack(lambda b: b.mlp.down_proj.weight.T).contiguous()  # (n, ff, d)
        self.norm1 = stack(lambda b: b.input_layernorm.weight)[:, None]  # (n, 1, d)
        self.norm2 = stack(lambda b: b.post_attention_layernorm.weight)[:, None]  # (n, 1, d)

    def _rms(self, x: torch.Tensor) -> torch.Tensor:
        # RMSNorm's arithmetic without its weight (as RMSNorm.forward, which multiplies last).
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def _attend_cache(self, k: torch.Tensor, v: torch.Tensor, cache) -> tuple[torch.Tensor, torch.Tensor]:
        """Append each head's keys and values (n, B, Hkv, T, hd) to its own cache layer; return all of them."""
        if cache is None:
            return k, v
        if hasattr(cache, "update_stacked"):  # a cache that keeps the heads' layers in one tensor
            return cache.update_stacked(k, v, self.first_layer)
        pairs = [cache.update(k[i], v[i], self.first_layer + i) for i in range(self.n)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])  # (n, B, Hkv, S, hd)

    def __call__(
        self,
        h_trunk: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache,
        keep: int = 0,
    ) -> torch.Tensor:
        """Each head block's output, (n, B, T, d), from ``h_trunk`` (B, T, d); (n, B, keep, d) with ``keep``.

        Keys and values are made for every position (the cache needs them); with ``keep`` the queries,
        the output projection and the MLP run on the last ``keep`` positions only, whose rows are the
        same as in a full run (a prefill needs only the last position's logits).
        """
        n, H, Hkv, hd = self.n, self.n_heads, self.n_kv_heads, self.head_dim
        B, T, d = h_trunk.shape
        x = self.norm1 * self._rms(h_trunk).reshape(1, B * T, d)  # (n, BT, d)
        qkv = torch.bmm(x, self.qkv).view(n, B, T, H + 2 * Hkv, hd).transpose(2, 3)  # (n, B, H + 2 Hkv, T, hd)
        cos, sin = rotary  # (B, 1, T, hd): broadcast over the heads
        # Queries and keys rotate by the same rule per element: one rotation for both.
        q, k = apply_rotary(qkv[:, :, : H + Hkv], cos, sin).split([H, Hkv], dim=2)
        v = qkv[:, :, H + Hkv :]
        k, v = self._attend_cache(k, v, cache)  # (n, B, Hkv, S, hd)
        S = k.shape[-2]
        k, v = k.reshape(n * B, Hkv, S, hd), v.reshape(n * B, Hkv, S, hd)
        if Hkv != H:
            k = k.repeat_interleave(H // Hkv, dim=1)  # (nB, H, S, hd)
            v = v.repeat_interleave(H // Hkv, dim=1)
        if mask is None and T > 1 and S != T:
            mask = _causal_mask(T, S, h_trunk.device)  # (T, S)
        if 0 < keep < T:
            q, h_trunk, T = q[..., -keep:, :], h_trunk[:, -keep:], keep
            mask = _causal_mask(T, S, h_trunk.device) if mask is None else mask[..., -keep:, :]
        if mask is not None and mask.dim() == 4:
            mask = mask.repeat(n, 1, 1, 1)  # batch index i * B + b is head i's row b
        is_causal = mask is None and T > 1
        out = F.scaled_dot_product_attention(q.reshape(n * B, H, T, hd), k, v, attn_mask=mask, is_causal=is_causal)
        out = out.view(n, B, H, T, hd).transpose(2, 3).reshape(n, B * T, H * hd)
        h = h_trunk.reshape(1, B * T, d) + torch.bmm(out, self.o)  # (n, BT, d)
        gate, up = torch.bmm(self.norm2 * self._rms(h), self.gate_up).chunk(2, dim=-1)
        h = h + torch.bmm(F.silu(gate) * up, self.down)
        return h.view(n, B, T, d)


# The modules of a head block whose weights StackedHeads stacks: (child of the block, its children).
_STACKED_PARTS = (
    ("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("mlp", ("gate_proj", "up_proj", "down_proj")),
)


@dataclass
class MTPOutput(CausalLMOutputWithPast):
    """A causal-LM output plus ``trunk_hidden_states``: h_trunk, (B, T, d), the heads' common input.

    ``logits`` is (B, T, V) for head 1, or (B, T, n, V) with ``return_all_heads=True``.
    """

    trunk_hidden_states: torch.Tensor | None = None


# transformers 5 names the output's cache ``cache``; 4.x named it ``past_key_values``.
_CACHE_FIELD = "cache" if "cache" in MTPOutput.__dataclass_fields__ else "past_key_values"


class MTPPreTrainedModel(PreTrainedModel):
    # No get/set_input_embeddings or get/set_output_embeddings in these classes: transformers' defaults
    # find ``embed_tokens``, ``model.embed_tokens`` and ``lm_head`` by name.
    config_class = MTPConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            with torch.no_grad():
                module.weight.normal_(mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            with torch.no_grad():
                module.weight.fill_(1.0)


class MTPModel(MTPPreTrainedModel):
    """The trunk: token embedding and the ``num_hidden_layers - n_future_tokens`` shared blocks."""

    def __init__(self, config: MTPConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_trunk_layers))
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.post_init()

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        h = inputs_embeds
        for layer in self.layers:
            h = layer(h, rotary, mask=mask, cache=cache)
        return h  # (B, T, d): h_trunk


class MTPForCausalLM(MTPPreTrainedModel, GenerationMixin):
    """Trunk, ``n_future_tokens`` head blocks, and the shared norm and unembedding.

    The pieces are also exposed separately for training code that runs the heads one at a time
    (:meth:`embed_and_trunk`, :meth:`head_logits`).
    """

    _tied_weights_keys: list[str] = []

    def __init__(self, config: MTPConfig):
        super().__init__(config)
        self.model = MTPModel(config)
        n_trunk = config.n_trunk_layers
        self.heads = nn.ModuleList(Block(config, n_trunk + k) for k in range(config.n_future_tokens))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @property
    def n_future_tokens(self) -> int:
        return self.config.n_future_tokens

    def head_logits(
        self,
        k: int,
        h_trunk: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
        logits_to_keep: int = 0,
    ) -> torch.Tensor:
        """Logits (B, T, V) of head ``k`` (0-based: 0 predicts the next token) from ``h_trunk``."""
        h = self.heads[k](h_trunk, rotary, mask=mask, cache=cache)  # (B, T, d)
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        return self.lm_head(self.norm(h))

    def stacked_heads(self) -> StackedHeads | None:
        """The head blocks as one :class:`StackedHeads`, built once and rebuilt when a head's weight changes.

        None when a head's projection is not a plain ``nn.Linear`` (an unmerged LoRA adapter, a quantised
        or hooked layer): stacking its ``.weight`` would leave the rest out, so the per-head blocks run.
        """
        # Read through _modules, not attribute access: this runs on every all-heads forward, where a walk of
        # the module tree costs more than a decoding step's matmuls at small sizes. A replaced module (an
        # adapter injected), a new tensor (.to(), loading) or a weight changed in place (an optimiser step)
        # changes the key.
        blocks = self.heads._modules.values()
        linears = [
            block._modules[group]._modules[name]
            for block in blocks
            for group, names in _STACKED_PARTS
            for name in names
        ]
        if not all(type(m) is nn.Linear and not m._forward_hooks and not m._forward_pre_hooks for m in linears):
            return None  # e.g. peft's LoRA layers, which hold the weight in a base_layer
        norms = [block._modules[name] for block in blocks for name in ("input_layernorm", "post_attention_layernorm")]
        weights = [m._parameters["weight"] for m in linears + norms]
        key = [(id(m), w.data_ptr(), w._version, w.dtype) for m, w in zip(linears + norms, weights, strict=True)]
        cached = self.__dict__.get("_stacked_heads")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, StackedHeads(self.heads))
            self.__dict__["_stacked_heads"] = cached
        return cached[1]

    def all_head_logits(
        self,
        h_trunk: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
        logits_to_keep: int = 0,
    ) -> torch.Tensor:
        """Logits (B, T, n, V) of every head from ``h_trunk``, the heads run as one batched computation.

        For inference (no gradient reaches the head weights); equals stacking :meth:`head_logits` of each
        head up to float rounding, and fills the same per-head cache layers.
        """
        stacked = self.stacked_heads()
        if stacked is None:
            per_head = [
                self.head_logits(k, h_trunk, rotary, mask, cache, logits_to_keep) for k in range(len(self.heads))
            ]
            return torch.stack(per_head, dim=2)
        h = stacked(h_trunk, rotary, mask, cache, keep=logits_to_keep)  # (n, B, T or keep, d)
        return self.lm_head(self.norm(h)).permute(1, 2, 0, 3).contiguous()  # (B, T, n, V)

    def embed_and_trunk(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """Run the trunk once; return ``(h_trunk, rotary, mask)``, what every head needs."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)  # (B, T, d)
        B, T = inputs_embeds.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        mask = None
        if attention_mask is not None and attention_mask.dim() == 4:
            mask = attention_mask  # already a per-query mask (e.g. built by generate for a static cache)
        elif attention_mask is not None and not bool(attention_mask.all()):
            mask = padding_aware_mask(attention_mask, T)  # (B, 1, T, past + T)
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2:
                # Left padding: positions count real tokens only, as if each row started at 0.
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]  # (B, T)
            else:
                position_ids = torch.arange(past, past + T, device=inputs_embeds.device)[None].expand(B, T)
        if mask is None and T > 1 and past > 0:
            # A block after cached positions (speculative decoding's verify step): one causal mask for every
            # layer rather than one built by each (a query block starting at 0 uses SDPA's is_causal instead).
            mask = _causal_mask(T, past + T, inputs_embeds.device)  # (T, past + T)
        rotary = self.model.rotary_emb(position_ids)
        h_trunk = self.model(inputs_embeds, rotary, mask, cache)
        return h_trunk, rotary, mask

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: DynamicCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        return_all_heads: bool = False,
        logits_to_keep: int = 0,
        past_key_values: DynamicCache | None = None,
        **kwargs,
    ) -> MTPOutput:
        """Next-token logits (B, T, V), or all heads' (B, T, n, V) with ``return_all_heads``.

        With ``labels`` (unshifted, -100 = not trained) ``loss`` is head 1's next-token
        cross-entropy, the usual causal-LM loss; the weighted multi-token loss lives in
        ``wmtp_cli.losses``. A KV cache holds one layer per block, heads included; a cache filled
        by head-1-only calls has no entries for heads 2..n, so mixing the two modes is refused.
        """
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None and not (self.training and torch.is_grad_enabled()):
            cache = DynamicCache()
        if not use_cache:
            cache = None
        if cache is not None and return_all_heads and self.n_future_tokens > 1:
            trunk_len = cache.get_seq_length(0) if self.config.n_trunk_layers else cache.get_seq_length()
            extra_len = cache.get_seq_length(self.config.n_trunk_layers + 1)
            if trunk_len != extra_len:
                raise ValueError(
                    "this KV cache was filled by head-1-only calls, so heads 2..n have no cached keys; "
                    "use return_all_heads=True on every call that shares the cache"
                )

        h_trunk, rotary, mask = self.embed_and_trunk(input_ids, attention_mask, position_ids, cache, inputs_embeds)
        if return_all_heads and self.n_future_tokens > 1 and not torch.is_grad_enabled():
            logits = self.all_head_logits(h_trunk, rotary, mask, cache, logits_to_keep)  # (B, T, n, V)
            head1 = logits[:, :, 0]
        else:
            n_heads = self.n_future_tokens if return_all_heads else 1
            per_head = [self.head_logits(k, h_trunk, rotary, mask, cache, logits_to_keep) for k in range(n_heads)]
            logits = torch.stack(per_head, dim=2) if return_all_heads else per_head[0]  # (B, T, n, V) or (B, T, V)
            head1 = per_head[0]

        loss = None
        if labels is not None:
            next_token_logits = head1[:, :-1]  # (B, T-1, V)
            loss = F.cross_entropy(
                next_token_logits.reshape(-1, next_token_logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        output = MTPOutput(loss=loss, logits=logits, trunk_hidden_states=h_trunk)
        output[_CACHE_FIELD] = cache
        return output
