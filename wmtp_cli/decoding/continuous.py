"""Continuous batching: many sequences decoded together, each leaving the batch the step it ends.

``generate()`` decodes a fixed batch until its longest row ends, so a row that stopped early (EOS,
or a stop sequence that is only cut off afterwards) keeps costing a row of every forward. Here each
sequence (a *row*) lives in a *slot* of a :class:`SlotCache`, a KV cache in which every slot has its
own length:

    admit:   a waiting row takes a free slot; its prompt is prefilled alone (one forward of batch 1,
             run when the prompt's first row is admitted and shared by its n samples, whose first
             tokens it chooses), and its keys and values are copied into the slot
    step:    one forward of every live row's last token, each at its own position, attending to its
             own slot's positions only (a (B, 1, 1, width) mask); head 1's logits give each row's next
             token; a row ends at EOS, at ``max_new_tokens`` or when its stop check says so
    retire:  an ended row's slot goes to the next waiting row; once none is waiting, ended rows'
             slots are dropped from the cache, so no forward computes a finished row

Rows never see each other: a prompt is prefilled alone, and a step's computation is row by row, so
a row's tokens do not depend on its batch, up to rounding: a batched matrix product's rounding depends
on the batch's size (measured on a 2-core CPU in float32: 1 to 3, 5 to 7 and 9 rows round differently
from 4, 8 or 16 and more), which can turn a token only at a near-tie between two of them.

The model must take ``model(input_ids, attention_mask=(B, 1, 1, S) additive, position_ids=(B, 1),
cache=...)`` with a cache object whose ``update(k, v, layer_idx)`` the attention calls, as
:class:`wmtp_cli.model.modeling.MTPForCausalLM` does.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from wmtp_cli.decoding.speculative import BlockCache

# next_tokens(logits (B, V), rows) -> tokens (B,): each live row's choice from its head-1 logits
ChooseTokens = Callable[[torch.Tensor, list["Row"]], torch.Tensor]


@dataclass
class Row:
    """One sequence being generated: sample ``sample`` of prompt ``prompt``."""

    prompt: int
    sample: int
    tokens: list[int] = field(default_factory=list)
    uniforms: list[float] | None = None  # a sampled row's random numbers, one per token


@dataclass
class BatchingStats:
    """What a continuous-batching run computed.

    ``row_steps``: rows computed by decoding forwards, summed over forwards; ``finished_row_steps``: of those,
    rows that had already ended (none here, by construction; the benchmark counts them for ``generate()``).
    """

    prefills: int = 0
    forwards: int = 0
    row_steps: int = 0
    finished_row_steps: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


class SlotCache:
    """A KV cache of ``slots`` sequences, each at its own length, written in place (see the module docstring).

    Layers are allocated on first write, zero-filled (a masked key must still be finite: SDPA multiplies
    its zero weight by it). ``width`` is the number of positions a forward attends to: the longest live
    row's length plus the one being written; shorter rows mask the rest.
    """

    def __init__(self, slots: int, capacity: int, device: torch.device):
        self.capacity = capacity
        self.device = device
        self.lengths = [0] * slots  # host copy: the positions each slot holds
        # layer -> (slots, Hkv, capacity, hd); a step writes every slot's new entries with one index_copy_ into
        # the (slots * Hkv * capacity, hd) view, at the flat index of (slot, kv head, the slot's position)
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self._flat_index = torch.zeros(0, dtype=torch.long, device=device)
        self.width = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width

    def _layer(self, layer_idx: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx not in self.keys:
            shape = (len(self.lengths), like.shape[1], self.capacity, like.shape[-1])
            self.keys[layer_idx] = like.new_zeros(shape)
            self.values[layer_idx] = like.new_zeros(shape)
        return self.keys[layer_idx], self.values[layer_idx]

    def load(self, slot: int, prefilled: BlockCache, layers: Sequence[int], length: int) -> None:
        """Put a prompt's keys and values (a batch-1 :class:`BlockCache` holding ``length`` positions) in ``slot``."""
        if length + 1 > self.capacity:
            raise ValueError(f"a prompt of {length} tokens does not fit a cache of {self.capacity} positions")
        for layer_idx in layers:
            k, v = prefilled.layer(layer_idx)  # (1, Hkv, length, hd)
            keys, values = self._layer(layer_idx, k)
            keys[slot, :, :length] = k[0]
            values[slot, :, :length] = v[0]
        self.lengths[slot] = length

    def begin_step(self, n_kv_heads: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Position ids (B, 1) and the additive attention mask (B, 1, 1, width) in ``dtype`` (0 where a slot's
        own positions are, -inf elsewhere; SDPA takes it as it is, where a boolean mask is converted in every
        layer) of a step that feeds one token per slot."""
        self.width = max(self.lengths) + 1
        if self.width > self.capacity:
            raise ValueError(f"SlotCache holds {self.capacity} positions; {self.width} were asked for")
        positions = torch.tensor(self.lengths, dtype=torch.long, device=self.device)  # (B,)
        rows = torch.arange(len(self.lengths) * n_kv_heads, device=self.device)  # (slot, kv head) pairs, flattened
        self._flat_index = rows * self.capacity + positions.repeat_interleave(n_kv_heads)
        hidden = torch.arange(self.width, device=self.device)[None] > positions[:, None]  # (B, width)
        mask = torch.zeros(hidden.shape, dtype=dtype, device=self.device).masked_fill_(hidden, float("-inf"))
        return positions[:, None], mask[:, None, None, :]

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write each slot's new keys and values (B, Hkv, 1, hd) at its own position; return (B, Hkv, width, hd)."""
        keys, values = self._layer(layer_idx, k)
        keys.view(-1, k.shape[-1]).index_copy_(0, self._flat_index, k.reshape(-1, k.shape[-1]))
        values.view(-1, v.shape[-1]).index_copy_(0, self._flat_index, v.reshape(-1, v.shape[-1]))
        return keys[:, :, : self.width], values[:, :, : self.width]

    def end_step(self) -> None:
        self.lengths = [n + 1 for n in self.lengths]

    def keep(self, slots: list[int]) -> None:
        """Keep only ``slots``, in this order (the others' rows have ended and no row waits for them)."""
        index = torch.tensor(slots, dtype=torch.long, device=self.device)
        for layer_idx in self.keys:
            self.keys[layer_idx] = self.keys[layer_idx].index_select(0, index)
            self.values[layer_idx] = self.values[layer_idx].index_select(0, index)
        self.lengths = [self.lengths[s] for s in slots]


@dataclass
class _Prefill:
    """A prompt's prefilled cache, kept until the last of its rows has been admitted."""

    cache: BlockCache
    rows_left: int  # its rows not yet admitted


class ContinuousBatcher:
    """Generates every row of ``rows`` with at most ``slots`` of them in a forward (see the module docstring).

    Args:
        model: an MTP causal LM (head 1 decodes).
        prompts: each prompt's token ids.
        choose: picks each live row's next token from its logits.
        ends: ``ends(row) -> bool`` after each token: True ends the row (EOS, the token budget, a stop).
        on_row: called with each row as it ends.
        stats: the :class:`BatchingStats` to add this batcher's counts to (a new one by default).
    """

    def __init__(
        self,
        model,
        prompts: Sequence[Sequence[int]],
        slots: int,
        max_new_tokens: int,
        choose: ChooseTokens,
        ends: Callable[[Row], bool],
        on_row: Callable[[Row], None],
        stats: BatchingStats | None = None,
    ):
        self.model = model
        self.device = next(model.parameters()).device
        self.prompts = [list(p) for p in prompts]
        self.slots = slots
        self.max_new_tokens = max_new_tokens
        self.choose = choose
        self.ends = ends
        self.on_row = on_row
        self.stats = stats if stats is not None else BatchingStats()
        n_trunk = model.config.n_trunk_layers
        self._layers = list(range(n_trunk + 1))  # the trunk's layers and head 1's
        self._n_kv_heads = model.config.num_key_value_heads
        self._dtype = next(model.parameters()).dtype
        self._prefills: dict[int, _Prefill] = {}
        self._unprefilled: dict[int, list[Row]] = {}  # per prompt whose prefill has not run: its rows

    @torch.inference_mode()
    def run(self, rows: Sequence[Row]) -> BatchingStats:
        """Generate every row, admitted in order. A prompt's prefill is kept until its last row is admitted, so
        rows of one prompt are best consecutive."""
        start = time.perf_counter()
        waiting = deque(rows)
        self._unprefilled = {}
        for row in rows:
            self._unprefilled.setdefault(row.prompt, []).append(row)
        if waiting:
            longest = max(len(self.prompts[r.prompt]) for r in waiting)
            cache = SlotCache(min(self.slots, len(waiting)), longest + self.max_new_tokens, self.device)
            live: list[Row | None] = [None] * len(cache.lengths)
            while True:
                self._admit(waiting, live, cache)
                if not any(live):
                    break
                if not waiting and not all(live):  # no row will take an ended row's slot: drop it
                    kept = [slot for slot, row in enumerate(live) if row is not None]
                    cache.keep(kept)
                    live = [live[slot] for slot in kept]
                self._step(live, cache)
        self.stats.seconds += time.perf_counter() - start
        return self.stats

    def _admit(self, waiting: deque[Row], live: list[Row | None], cache: SlotCache) -> None:
        """Fill free slots with waiting rows (prefill, first token); a row that ends on its first token retires."""
        for slot in range(len(live)):
            while live[slot] is None and waiting:
                row = waiting.popleft()
                prefill = self._prefill(row.prompt)
                prefill.rows_left -= 1
                if not prefill.rows_left:
                    del self._prefills[row.prompt]  # its last row: the slot copy is all that is needed now
                self.stats.new_tokens += 1  # the first token, chosen by the prefill
                if self._ended(row):
                    continue
                cache.load(slot, prefill.cache, self._layers, len(self.prompts[row.prompt]))
                live[slot] = row

    def _prefill(self, prompt: int) -> _Prefill:
        """The prompt's prefill, run on its first row's admission; every row of the prompt gets its first token."""
        prefill = self._prefills.get(prompt)
        if prefill is None:
            ids = torch.tensor([self.prompts[prompt]], dtype=torch.long, device=self.device)
            cache = BlockCache(self.model.config.num_hidden_layers, self.model.config.n_trunk_layers, ids.shape[1])
            logits = self.model(ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # (1, V)
            rows = self._unprefilled.pop(prompt)
            for row, token in zip(rows, self.choose(logits.expand(len(rows), -1), rows).tolist(), strict=True):
                row.tokens.append(token)
            prefill = _Prefill(cache, len(rows))
            self._prefills[prompt] = prefill
            self.stats.prefills += 1
        return prefill

    def _ended(self, row: Row) -> bool:
        """Whether ``row`` has ended after its newest token; an ended row is handed on."""
        if len(row.tokens) < self.max_new_tokens and not self.ends(row):
            return False
        self.on_row(row)
        return True

    def _step(self, live: list[Row | None], cache: SlotCache) -> None:
        """One forward of every live row's last token; each row takes its next token or ends."""
        rows: list[Row] = [row for row in live if row is not None]
        assert len(rows) == len(live), "a free slot is filled or dropped before a step"
        ids = torch.tensor([[row.tokens[-1]] for row in rows], dtype=torch.long, device=self.device)  # (B, 1)
        positions, mask = cache.begin_step(self._n_kv_heads, self._dtype)
        logits = self.model(ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True).logits
        cache.end_step()
        self.stats.forwards += 1
        self.stats.row_steps += len(rows)
        tokens = self.choose(logits[:, -1], rows).tolist()
        for slot, row in enumerate(rows):
            row.tokens.append(tokens[slot])
            self.stats.new_tokens += 1
            if self._ended(row):
                live[slot] = None
