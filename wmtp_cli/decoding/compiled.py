"""Greedy and self-speculative decoding steps compiled with ``torch.compile`` over a static KV cache.

A compiled function is specialised to its input shapes, so the cache a compiled step writes must not
change shape from step to step: :class:`StaticCache` holds every layer at its full capacity (the prompt
plus every new token), each step writes its positions in place (``index_copy_`` at a position tensor)
and attends to the whole buffer through an additive mask that hides the positions not yet written (or
written by drafts later rejected). A crop is then only a lower length: the next step writes over the
rejected positions. The decoding loops of :mod:`wmtp_cli.decoding.speculative` drive
:class:`CompiledSteps` exactly as they drive the eager cache, so the tokens are the same algorithm's;
the prompt's prefill runs eagerly (its length varies), the steps (1 token, or a block of 1 + drafts)
run compiled, one graph per block length.

Compiled kernels fuse operations and may round differently from eager ones, so identity with eager
greedy decoding is exact in exact arithmetic and checked by the tests and the benchmark on real models.
"""

from __future__ import annotations

import weakref

import torch
from transformers import DynamicCache


class StaticCache:
    """Every layer's keys and values at full capacity, written in place at ``write_at`` (see the module docstring).

    Trunk layers are (1, Hkv, capacity, hd) each; the heads' layers are one (h, 1, Hkv, capacity, hd) tensor
    (all n heads, or head 1 alone), which :class:`~wmtp_cli.model.modeling.StackedHeads` writes in one copy.
    """

    def __init__(self, model, capacity: int, heads: int, device: torch.device, dtype: torch.dtype):
        config = model.config
        shape = (1, config.num_key_value_heads, capacity, config.head_dim)
        self.first_head = config.n_trunk_layers
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.first_head)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.first_head)]
        self.head_keys = torch.zeros((heads, *shape), device=device, dtype=dtype)
        self.head_values = torch.zeros((heads, *shape), device=device, dtype=dtype)
        self.write_at = torch.zeros(1, dtype=torch.long, device=device)  # the positions the next forward writes

    def get_seq_length(self, layer_idx: int = 0) -> int:
        # The callers pass position ids and a mask, so the model never needs a length from the cache.
        return 0

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's (1, Hkv, T, hd) at ``write_at``; return the layer's whole buffers."""
        if layer_idx < self.first_head:
            keys, values = self.keys[layer_idx], self.values[layer_idx]
        else:
            keys, values = self.head_keys[layer_idx - self.first_head], self.head_values[layer_idx - self.first_head]
        keys.index_copy_(2, self.write_at, k)
        values.index_copy_(2, self.write_at, v)
        return keys, values

    def update_stacked(self, k: torch.Tensor, v: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write every head's (h, 1, Hkv, T, hd) at ``write_at``; return all heads' whole buffers."""
        self.head_keys.index_copy_(3, self.write_at, k)
        self.head_values.index_copy_(3, self.write_at, v)
        return self.head_keys, self.head_values

    def to_dynamic(self, length: int) -> DynamicCache:
        """The first ``length`` positions of every layer, copied into a ``DynamicCache``."""
        cache = DynamicCache()
        layers = [(k, v) for k, v in zip(self.keys, self.values, strict=True)]
        layers += [(self.head_keys[i], self.head_values[i]) for i in range(self.head_keys.shape[0])]
        for layer_idx, (k, v) in enumerate(layers):
            cache.update(k[..., :length, :].clone(), v[..., :length, :].clone(), layer_idx)
        return cache


class CompiledSteps:
    """Forwards of one sequence over a :class:`StaticCache`; the decoding steps compiled (see the module docstring).

    ``forward(ids, keep)`` appends ``ids`` (1, T) after the ``length`` positions kept so far and returns
    logits (T, h, V) (all heads, or head 1 as h = 1; the last ``keep`` positions if set); ``crop(length)``
    keeps the first ``length`` positions. ``backend`` is torch.compile's (``"inductor"``; the tests use
    ``"aot_eager"``, which traces the same graphs without generating kernels).

    The compiled function is made once per (model, heads, backend) and shared by every call, with the cache
    an argument: a graph is specialised to the cache's capacity, which is rounded up to a multiple of
    :data:`CAPACITY_STEP` so that prompts of similar lengths share graphs.
    """

    def __init__(self, model, capacity: int, all_heads: bool, backend: str = "inductor"):
        parameter = next(model.parameters())
        self.model = model
        self.all_heads = all_heads
        self.capacity = -(-capacity // CAPACITY_STEP) * CAPACITY_STEP
        self.length = 0
        self.stacked = model.stacked_heads() if all_heads else None
        if all_heads and self.stacked is None:
            raise ValueError("compiled speculative decoding needs plain head blocks (merge a LoRA adapter first)")
        heads = model.config.n_future_tokens if all_heads else 1
        self.cache = StaticCache(model, self.capacity, heads, parameter.device, parameter.dtype)
        self._dtype = parameter.dtype
        compiled = _COMPILED.setdefault(model, {})
        if (all_heads, backend) not in compiled:
            compiled[all_heads, backend] = torch.compile(_step, backend=backend, dynamic=False)
        self._compiled = compiled[all_heads, backend]

    def forward(self, ids: torch.Tensor, keep: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        if self.length + T > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {self.length + T} were asked for")
        positions = torch.arange(self.length, self.length + T, device=ids.device)[None]  # (1, T)
        keys = torch.arange(self.capacity, device=ids.device)
        hidden = keys[None, :] > positions[0, :, None]  # (T, capacity): later positions, and stale ones
        mask = torch.zeros(hidden.shape, dtype=self._dtype, device=ids.device).masked_fill_(hidden, float("-inf"))
        args = (self.model, self.stacked, self.cache, ids, positions, mask[None, None])
        if keep:  # the prefill (keep=1, any length) runs eagerly
            logits = _step(*args, keep=keep)
        else:
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                logits = self._compiled(*args)
        self.length += T
        return logits

    def crop(self, length: int) -> None:
        self.length = min(self.length, length)

    def to_dynamic(self) -> DynamicCache:
        return self.cache.to_dynamic(self.length)


CAPACITY_STEP = 256  # cache capacities are multiples of this
RECOMPILE_LIMIT = 64  # graphs per compiled function: capacities times block lengths (1 to n)
# model -> {(all heads, backend): compiled _step}; weak, so a model's graphs go with it
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _step(model, stacked, cache: StaticCache, ids, positions, mask, keep: int = 0) -> torch.Tensor:
    """Logits (T or keep, h, V) of ``ids`` (1, T) at ``positions`` (1, T), their keys and values written into
    ``cache``; ``stacked`` runs all heads (None: head 1 alone)."""
    cache.write_at = positions[0]
    h_trunk, rotary, mask = model.embed_and_trunk(ids, mask, positions, cache)
    if stacked is not None:
        h = stacked(h_trunk, rotary, mask, cache, keep=keep)  # (n, 1, T or keep, d)
        return model.lm_head(model.norm(h))[:, 0].transpose(0, 1)  # (T, n, V)
    return model.head_logits(0, h_trunk, rotary, mask, cache, logits_to_keep=keep)[0][:, None]  # (T, 1, V)
