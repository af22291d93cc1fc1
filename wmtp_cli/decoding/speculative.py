"""Self-speculative greedy decoding with the MTP heads (blockwise parallel decoding, Stern et al. 2018).

An MTP model's head k (1-based) at position t predicts token t + k, so one forward proposes a block
of n tokens: head 1's choice is certain (it *is* greedy decoding), heads 2..n's are drafts. Each
step then verifies the drafts and proposes the next block in the same forward:

    prefill:  run the prompt through all heads; at the last position head 1 gives the certain
              token c, heads 2..1+m give drafts d_1..d_m (m = n_draft, at most n - 1)
    step:     feed [c, d_1, ..., d_m] in ONE forward with all heads
              g_i = head 1's argmax at fed position i (greedy's choice for the token after it)
              accept the longest prefix with d_{i+1} == g_i for i < a   (0 <= a <= m)
              new tokens: d_1..d_a, then g_a (head 1 after the last accepted token: certain)
              next block: c' = g_a and drafts = heads 2..1+m's argmaxes at fed position a
              crop the KV cache back to the positions of c, d_1..d_a

Every emitted token is head 1's argmax given exactly the tokens before it, so the output is
token-for-token plain greedy decoding; a step emits 1 + a tokens for one forward. The drafts are
cheap because every head block already runs on every fed position (their KV entries are needed
anyway), and the extra positions cost little on a GPU that is memory-bound at batch size 1.

Speed: an all-heads forward runs the n head blocks as one batched computation (the model's
``StackedHeads``: one matmul per projection for every head), so a speculative forward costs the
trunk plus about one block rather than n, and both decoders keep their keys and values in a
:class:`BlockCache` (buffers of fixed capacity written in place; a crop lowers a length) instead of a
``DynamicCache`` that concatenates every layer on every step.

Cache invariant: the cache holds one layer per block (trunk and all n heads, since every call
runs all heads) and, between steps, exactly the positions of the sequence *except its last
token* (the certain token, which the next step feeds first). Rejected drafts were written by the
step's forward and are cropped from every layer before the next step, so a later forward never
attends to a token that is not in the sequence. On return ``cache.get_seq_length() ==
sequences.shape[1] - 1``, the same state a plain cached decoder leaves, so generation could go on
by feeding ``sequences[:, -1:]`` (the returned cache is a ``DynamicCache`` copy of the BlockCache).
With ``n_draft == 0`` only head 1 runs (a head-1-only cache).

Stopping applies the same rules one token at a time as plain greedy decoding does, so a step
that accepts several tokens is cut at the first that stops: an EOS token (kept, as
``generate()`` keeps it), the ``max_new_tokens``-th token, or the token after which
``stop_check(new_token_ids)`` first returns True (kept too; cut the text with
:func:`wmtp_cli.decoding.generation.truncate_at_stop`). The fed block is also shortened near the budget,
so no forward computes tokens past ``max_new_tokens``.

Identity with greedy decoding is exact in exact arithmetic. A forward over several positions can
round differently from a one-token forward, so in bf16 a near-tie between two tokens can in rare
cases resolve differently; in fp32 on small models the outputs agree exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from wmtp_cli.decoding.stopping import token_set

StopCheck = Callable[[list[int]], bool]


@dataclass
class SpeculativeOutput:
    """Generated ids and the counts that explain the speed.

    Attributes:
        sequences: (1, T + new_tokens), prompt then new tokens, as ``generate()`` returns.
        forwards: model calls, the prefill included.
        new_tokens: tokens generated (an EOS or stop token included).
        seconds: wall-clock time of the whole call (prefill included; CUDA synchronised).
        draft_proposed: per draft head (index 0 is head 2): drafts it made that were checked, i.e.
            fed while every earlier draft of the same block was accepted.
        draft_accepted: per draft head: of those, drafts equal to greedy's choice.
        cache: the KV cache on return; it holds ``sequences.shape[1] - 1`` positions.
    """

    sequences: torch.Tensor
    forwards: int
    new_tokens: int
    seconds: float
    draft_proposed: list[int] = field(default_factory=list)
    draft_accepted: list[int] = field(default_factory=list)
    cache: DynamicCache | None = field(default=None, repr=False)

    @property
    def decoding_forwards(self) -> int:
        """Forwards after the prefill."""
        return max(self.forwards - 1, 0)

    @property
    def tokens_per_forward(self) -> float:
        """Tokens per decoding forward: ``(new_tokens - 1) / (forwards - 1)``.

        The prefill and the one token it yields are both left out, so plain greedy decoding gives
        exactly 1.0 and a model whose n - 1 drafts are always accepted gives n (less only where
        the last block is cut by ``max_new_tokens`` or a stop). NaN when there was no decoding
        forward (one new token).
        """
        if self.decoding_forwards == 0:
            return math.nan
        return (self.new_tokens - 1) / self.decoding_forwards

    @property
    def accepted_per_head(self) -> list[float]:
        """Per draft head (index 0 is head 2): accepted / checked, NaN where it was never reached."""
        return [a / p if p else math.nan for a, p in zip(self.draft_accepted, self.draft_proposed, strict=True)]


class _Collector:
    """The new tokens, appended one at a time under plain greedy decoding's stopping rules."""

    def __init__(self, max_new_tokens: int, eos_token_id: int | Iterable[int] | None, stop_check: StopCheck | None):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self.eos = token_set(eos_token_id)
        self.stop_check = stop_check
        self.tokens: list[int] = []

    @property
    def room(self) -> int:
        return self.max_new_tokens - len(self.tokens)

    def extend(self, tokens: Iterable[int]) -> bool:
        """Append ``tokens`` in order until one ends generation; True when it has ended."""
        for token in tokens:
            self.tokens.append(token)
            if token in self.eos or len(self.tokens) >= self.max_new_tokens:
                return True
            if self.stop_check is not None and self.stop_check(self.tokens):
                return True
        return False


class BlockCache:
    """A KV cache of fixed capacity for one decoding call: one layer per block, written in place.

    ``DynamicCache`` concatenates every layer on every step and crops each layer on its own; this one
    writes into buffers allocated once (``capacity`` positions), crops by lowering a length, and keeps
    the n heads' layers in one (n, B, Hkv, capacity, hd) tensor, so the model's batched heads
    (:class:`wmtp_cli.model.modeling.StackedHeads`) append to all of them in one copy
    (:meth:`update_stacked`). The values are the same as a ``DynamicCache``'s; :meth:`to_dynamic` gives one.
    Layer ``first_head + i`` is head i + 1's, whether written alone (head-1-only calls) or stacked.
    """

    def __init__(self, n_layers: int, first_head: int, capacity: int):
        self.first_head = first_head
        self.capacity = capacity
        self.lengths = [0] * n_layers
        self.keys: list[torch.Tensor | None] = [None] * first_head  # trunk layers: (B, Hkv, capacity, hd)
        self.values: list[torch.Tensor | None] = [None] * first_head
        self.head_keys: torch.Tensor | None = None  # (n, B, Hkv, capacity, hd)
        self.head_values: torch.Tensor | None = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.lengths[layer_idx]

    def crop(self, length: int) -> None:
        """Keep the first ``length`` positions of every layer."""
        self.lengths = [min(n, length) for n in self.lengths]

    def _room(self, start: int, new: int) -> int:
        end = start + new
        if end > self.capacity:
            raise ValueError(f"BlockCache holds {self.capacity} positions; {end} were asked for")
        return end

    def _buffers(self, k: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty key and value buffers for one layer's ``k`` (B, Hkv, T, hd), or for ``heads`` such layers."""
        shape = (*k.shape[:-2], self.capacity, k.shape[-1])
        if heads:
            shape = (heads, *shape)
        return k.new_empty(shape), k.new_empty(shape)

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Append keys and values (B, Hkv, T, hd) to one layer; return the layer's (B, Hkv, S, hd)."""
        start = self.lengths[layer_idx]
        end = self._room(start, k.shape[-2])
        if layer_idx < self.first_head:
            if self.keys[layer_idx] is None:
                self.keys[layer_idx], self.values[layer_idx] = self._buffers(k, 0)
            keys, values = self.keys[layer_idx], self.values[layer_idx]
        else:
            if self.head_keys is None:
                self.head_keys, self.head_values = self._buffers(k, len(self.lengths) - self.first_head)
            keys, values = self.head_keys[layer_idx - self.first_head], self.head_values[layer_idx - self.first_head]
        keys[..., start:end, :] = k
        values[..., start:end, :] = v
        self.lengths[layer_idx] = end
        return keys[..., :end, :], values[..., :end, :]

    def update_stacked(self, k: torch.Tensor, v: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Append every head's keys and values (n, B, Hkv, T, hd) at once; return all heads' (n, B, Hkv, S, hd)."""
        if first != self.first_head or k.shape[0] != len(self.lengths) - first:
            raise ValueError("update_stacked writes all head layers at once")
        starts = set(self.lengths[first:])
        if len(starts) != 1:
            raise ValueError("the head layers hold different lengths: a head-1-only call filled this cache")
        start = starts.pop()
        end = self._room(start, k.shape[-2])
        if self.head_keys is None:
            self.head_keys, self.head_values = self._buffers(k[0], k.shape[0])
        self.head_keys[..., start:end, :] = k
        self.head_values[..., start:end, :] = v
        self.lengths[first:] = [end] * k.shape[0]
        return self.head_keys[..., :end, :], self.head_values[..., :end, :]

    def layer(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's cached keys and values, (B, Hkv, S, hd) each (views)."""
        end = self.lengths[layer_idx]
        if layer_idx < self.first_head:
            return self.keys[layer_idx][..., :end, :], self.values[layer_idx][..., :end, :]
        i = layer_idx - self.first_head
        return self.head_keys[i, ..., :end, :], self.head_values[i, ..., :end, :]

    def to_dynamic(self) -> DynamicCache:
        """The same contents as a ``DynamicCache`` (the layers written so far, copied), for later ``model()`` calls."""
        cache = DynamicCache()
        for layer_idx, length in enumerate(self.lengths):
            if length == 0:
                break  # head-1-only: heads 2..n were never written
            k, v = self.layer(layer_idx)
            cache.update(k.clone(), v.clone(), layer_idx)
        return cache


def _check_prompt(model, input_ids: torch.Tensor) -> torch.Tensor:
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be one non-empty sequence of shape (1, T), got {tuple(input_ids.shape)}")
    return input_ids.to(model.device)


def _sync(device: torch.device) -> None:
    # Kernels run asynchronously on CUDA: time only finished work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _EagerSteps:
    """Forwards of one sequence through ``model()`` over a :class:`BlockCache` (the compiled counterpart is
    :class:`wmtp_cli.decoding.compiled.CompiledSteps`, driven the same way)."""

    def __init__(self, model, capacity: int, all_heads: bool):
        config = model.config
        self.model = model
        self.all_heads = all_heads
        self.cache = BlockCache(config.num_hidden_layers, config.n_trunk_layers, capacity)

    def forward(self, ids: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """Logits (T, h, V) of ``ids`` (1, T) after the cached positions: all n heads, or head 1 only (h = 1);
        the last ``keep`` positions if set.

        A prefill needs the last position's logits only (as ``generate()`` asks for): the unembedding of
        every prompt position by every head would cost more than a decoding step.
        """
        model, cache = self.model, self.cache
        if self.all_heads:
            return model(ids, cache=cache, use_cache=True, return_all_heads=True, logits_to_keep=keep).logits[0]
        return model(ids, cache=cache, use_cache=True, logits_to_keep=keep).logits[0][:, None]  # (T, 1, V)

    def crop(self, length: int) -> None:
        self.cache.crop(length)

    def to_dynamic(self) -> DynamicCache:
        return self.cache.to_dynamic()


def _output(input_ids, collector, forwards, start, steps, proposed, accepted) -> SpeculativeOutput:
    new = torch.tensor([collector.tokens], dtype=input_ids.dtype, device=input_ids.device)  # (1, new)
    # Positions computed for tokens after a stop (an accepted draft past EOS) are dropped too.
    steps.crop(input_ids.shape[1] + len(collector.tokens) - 1)
    sequences = torch.cat([input_ids, new], dim=1)
    _sync(input_ids.device)
    seconds = time.perf_counter() - start
    return SpeculativeOutput(
        sequences=sequences,
        forwards=forwards,
        new_tokens=len(collector.tokens),
        seconds=seconds,
        draft_proposed=proposed,
        draft_accepted=accepted,
        cache=steps.to_dynamic(),  # outside the timing: a copy for callers
    )


def _new_steps(model, input_ids: torch.Tensor, max_new_tokens: int, all_heads: bool, compile: bool):
    """The forwards of one decoding call, with cache room for the prompt and every new token (no forward writes
    past ``max_new_tokens``): eager, or compiled over a static cache."""
    capacity = input_ids.shape[1] + max_new_tokens
    if compile:
        from wmtp_cli.decoding.compiled import CompiledSteps

        return CompiledSteps(model, capacity, all_heads, backend=compile if isinstance(compile, str) else "inductor")
    return _EagerSteps(model, capacity, all_heads)


def _draft_heads(model, n_draft: int | None) -> int:
    """``n_draft``, checked against the model's heads; None means every head after head 1."""
    n = getattr(model.config, "n_future_tokens", 1)
    n_draft = n - 1 if n_draft is None else n_draft
    if not 0 <= n_draft <= n - 1:
        raise ValueError(f"n_draft must be between 0 and {n - 1} (the model has {n} heads), got {n_draft}")
    return n_draft


def _verify(steps, fed: torch.Tensor, width: int) -> tuple[torch.Tensor, list[list[int]]]:
    """One forward over the fed block: each fed position's choices of heads 1..width, on the device and as ints.

    ``preds[i, 0]`` is greedy's token after fed token i; ``preds[i, 1:]`` are drafts for the ones after it.
    """
    logits = steps.forward(fed[None])  # (1 + m, h, V)
    preds = logits[:, :width].argmax(-1)  # (1 + m, width)
    # One device-to-host copy per step; it is needed anyway for the crop length. The acceptance scan
    # runs over at most n - 1 ints, cheaper in Python than as device kernels.
    return preds, preds.tolist()


def _accept(drafts: list[int], host: list[list[int]], proposed: list[int], accepted: list[int]) -> int:
    """How many drafts, from the first, equal greedy's choice; counts them into ``proposed`` and ``accepted``."""
    m = len(drafts)
    a = 0
    while a < m and drafts[a] == host[a][0]:
        a += 1
    for k in range(min(a + 1, m)):  # drafts up to the first rejected one were checked
        proposed[k] += 1
    for k in range(a):
        accepted[k] += 1
    return a


@torch.inference_mode()
def speculative_generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | Iterable[int] | None = None,
    n_draft: int | None = None,
    stop_check: StopCheck | None = None,
    compile: bool | str = False,
) -> SpeculativeOutput:
    """Greedy decoding of one sequence, accelerated by drafting with heads 2..n (see the module docstring).

    Args:
        model: an MTP causal LM (``model(ids, return_all_heads=True)`` gives (B, T, n, V) logits).
        input_ids: the prompt, (1, T).
        max_new_tokens: at most this many new tokens, as plain greedy decoding would make.
        eos_token_id: stop after this token (or any of these); None never stops early. ``generate()``
            reads it from the generation config; pass ``model.generation_config.eos_token_id`` to match.
        n_draft: heads that draft (heads 2..1+n_draft); default n - 1, 0 is plain greedy decoding.
        stop_check: called with the list of new token ids after each token (read-only: it is the live
            buffer); True stops after that token.
        compile: run the steps with ``torch.compile`` over a static cache
            (:mod:`wmtp_cli.decoding.compiled`); a string names the backend.

    Returns:
        a :class:`SpeculativeOutput` whose ``sequences`` equal ``model.generate(do_sample=False)``'s.
    """
    input_ids = _check_prompt(model, input_ids)
    n_draft = _draft_heads(model, n_draft)
    collector = _Collector(max_new_tokens, eos_token_id, stop_check)
    all_heads = n_draft > 0
    width = 1 + n_draft  # the certain token's head, then the drafting heads
    proposed, accepted = [0] * n_draft, [0] * n_draft
    steps = _new_steps(model, input_ids, max_new_tokens, all_heads, compile)

    _sync(input_ids.device)
    start = time.perf_counter()
    logits = steps.forward(input_ids, keep=1)  # (1, h, V)
    block = logits[-1, :width].argmax(-1)  # (width,): certain next token, then drafts for the ones after it
    host_block = block.tolist()
    forwards = 1
    done = collector.extend(host_block[:1])
    while not done:
        # Feed no draft whose acceptance would overrun the budget: the step's own certain token needs a slot.
        m = min(n_draft, collector.room - 1)
        drafts = host_block[1 : 1 + m]
        seq_len = input_ids.shape[1] + len(collector.tokens)  # the cache holds seq_len - 1 positions
        preds, host = _verify(steps, block[: 1 + m], width)  # (1 + m, width) each
        forwards += 1
        a = _accept(drafts, host, proposed, accepted)
        steps.crop(seq_len + a)  # keep the certain token and the accepted drafts
        done = collector.extend([*drafts[:a], host[a][0]])
        block, host_block = preds[a], host[a]  # at the last accepted position: next certain token and drafts
    return _output(input_ids, collector, forwards, start, steps, proposed, accepted)


@torch.inference_mode()
def greedy_generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | Iterable[int] | None = None,
    stop_check: StopCheck | None = None,
    compile: bool | str = False,
) -> SpeculativeOutput:
    """Plain greedy decoding with head 1 and a KV cache: the reference, timed like :func:`speculative_generate`.

    One forward per token (``tokens_per_forward == 1``); stops by the same rules, and leaves the cache
    with the same invariant (``sequences.shape[1] - 1`` positions, head-1 layers only). ``compile`` as in
    :func:`speculative_generate`.
    """
    input_ids = _check_prompt(model, input_ids)
    collector = _Collector(max_new_tokens, eos_token_id, stop_check)
    steps = _new_steps(model, input_ids, max_new_tokens, False, compile)

    _sync(input_ids.device)
    start = time.perf_counter()
    token = steps.forward(input_ids, keep=1)[-1, 0].argmax()  # ()
    forwards = 1
    done = collector.extend([int(token)])
    while not done:
        token = steps.forward(token.view(1, 1))[-1, 0].argmax()  # ()
        forwards += 1
        done = collector.extend([int(token)])
    return _output(input_ids, collector, forwards, start, steps, [], [])
