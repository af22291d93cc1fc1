"""Completions of a causal LM for many prompts: sampled or greedy with continuous batching, or self-speculative.

:func:`sample_completions` decodes an MTP model's rows with :class:`~wmtp_cli.decoding.continuous.ContinuousBatcher`:
every row stops on its own (EOS, the token budget, a stop sequence found while it is generated), leaves
the batch, and a waiting row takes its slot. Each sample draws from its own seed (the run's seed, the
problem and the sample index; :func:`~wmtp_cli.decoding.sampling.sample_seed`), so a sample is the same
whatever the batch size, whichever rows it ran beside, and whether the run was resumed. Another causal LM
(no MTP heads) is sampled with ``generate()``, one prompt's n samples at a time, seeded per problem.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch

from wmtp_cli.decoding.continuous import BatchingStats, ContinuousBatcher, Row
from wmtp_cli.decoding.sampling import choose_tokens, sample_seed, sample_uniforms
from wmtp_cli.decoding.stopping import StopStrings, continuation, eos_ids, truncate_at_stop


@torch.no_grad()
def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    stop: Sequence[str] = (),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    skip: Collection[int] = (),
    on_problem: Callable[[int, list[str]], None] | None = None,
    problem_keys: Sequence[str] | None = None,
    stats: BatchingStats | None = None,
) -> list[list[str]]:
    """``n`` completions for each prompt, as text after the prompt (cut at the first stop sequence).

    ``batch_size`` sequences are decoded at once. ``temperature == 0`` means greedy decoding (one row per
    prompt, its text repeated ``n`` times). Sample ``j`` of prompt ``i`` draws from
    ``sample_seed(seed, problem_keys[i], j)`` (the prompt's index without keys), and nothing else.

    Resuming: prompts whose indices are in ``skip`` are left out (an interrupted run has them); only the
    others' completions are returned, in prompt order. ``on_problem(index, completions)`` receives each
    prompt's completions as soon as its last sample ends (prompts end out of order); ``progress(done,
    total)`` counts prompts, the skipped ones as done. ``stats`` (a :class:`BatchingStats`) is added to.
    """
    skipped = set(skip)
    todo = _Todo.of(tokenizer, prompts, [i for i in range(len(prompts)) if i not in skipped], problem_keys)
    rows_per_prompt = 1 if temperature == 0 else n
    done: dict[int, list[str | None]] = {i: [None] * rows_per_prompt for i in todo.indices}
    finished = len(prompts) - len(todo.indices)

    def end_row(prompt: int, sample: int, new: list[int]) -> None:
        nonlocal finished
        own = done[prompt]
        own[sample] = truncate_at_stop(continuation(tokenizer, todo.ids[prompt], new, todo.texts[prompt]), stop)
        if all(text is not None for text in own):
            completions = own * n if temperature == 0 else list(own)
            done[prompt] = completions
            finished += 1
            if on_problem is not None:
                on_problem(prompt, completions)
            if progress is not None:
                progress(finished, len(prompts))

    decoding = _Decoding(rows_per_prompt, temperature, top_p, max_new_tokens, batch_size, tuple(stop), seed)
    if hasattr(model, "head_logits"):
        _continuous(model, tokenizer, todo, decoding, end_row, stats)
    else:
        _per_prompt(model, tokenizer, todo, decoding, end_row)
    return [done[i] for i in todo.indices]


@dataclass(frozen=True)
class _Todo:
    """The prompts to decode (their indices, in order) with their token ids, decoded text and seed keys."""

    indices: list[int]
    ids: dict[int, list[int]]
    texts: dict[int, str]
    keys: list

    @classmethod
    def of(cls, tokenizer, prompts: Sequence[str], indices: list[int], keys: Sequence[str] | None) -> _Todo:
        ids = {i: tokenizer(prompts[i], add_special_tokens=True)["input_ids"] for i in indices}
        texts = {i: tokenizer.decode(ids[i], skip_special_tokens=True) for i in indices}
        return cls(indices, ids, texts, list(keys) if keys is not None else list(range(len(prompts))))


@dataclass(frozen=True)
class _Decoding:
    """How :func:`sample_completions` decodes: rows per prompt (1 when greedy) and the sampling settings."""

    rows_per_prompt: int
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int
    stop: tuple[str, ...]
    seed: int


def _continuous(model, tokenizer, todo: _Todo, decoding: _Decoding, end_row, stats: BatchingStats | None) -> None:
    """Every row of ``todo``'s prompts through one :class:`ContinuousBatcher` (an MTP model)."""
    eos, stopper = eos_ids(model, tokenizer), StopStrings(tokenizer, decoding.stop)
    sampled = decoding.temperature > 0
    order = todo.indices  # the batcher's prompt index is the position in ``order``
    rows = [
        Row(prompt=position, sample=j, uniforms=sample_uniforms(sample_seed(decoding.seed, todo.keys[i], j),
                                                                decoding.max_new_tokens) if sampled else None)
        for position, i in enumerate(order)
        for j in range(decoding.rows_per_prompt)
    ]  # fmt: skip

    def choose(logits: torch.Tensor, batch: list[Row]) -> torch.Tensor:
        if not sampled:
            return logits.argmax(-1)
        # float32 (what choose_tokens compares them in), made on the logits' device (MPS has no float64)
        uniforms = torch.tensor([row.uniforms[len(row.tokens)] for row in batch], dtype=torch.float32)
        return choose_tokens(logits, decoding.temperature, decoding.top_p, uniforms.to(logits.device))

    def ends(row: Row) -> bool:
        if row.tokens[-1] in eos:
            return True
        i = order[row.prompt]
        return bool(stopper) and stopper(todo.ids[i], todo.texts[i], row.tokens)

    batcher = ContinuousBatcher(
        model, [todo.ids[i] for i in order], decoding.batch_size, decoding.max_new_tokens, choose, ends,
        on_row=lambda row: end_row(order[row.prompt], row.sample, row.tokens), stats=stats,
    )  # fmt: skip
    batcher.run(rows)


def _per_prompt(model, tokenizer, todo: _Todo, decoding: _Decoding, end_row) -> None:
    """A causal LM without MTP heads: ``generate()`` on one prompt's rows at a time, seeded by its problem."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = decoding.temperature > 0
    for i in todo.indices:
        ids = todo.ids[i]
        torch.manual_seed(sample_seed(decoding.seed, todo.keys[i], 0))
        generated = model.generate(
            torch.tensor([ids], device=device), attention_mask=torch.ones(1, len(ids), device=device,
            dtype=torch.long), do_sample=sampling, temperature=decoding.temperature if sampling else None,
            top_p=decoding.top_p if sampling else None, max_new_tokens=decoding.max_new_tokens,
            num_return_sequences=decoding.rows_per_prompt, pad_token_id=pad,
            stop_strings=list(decoding.stop) or None, tokenizer=tokenizer if decoding.stop else None,
        )  # (rows_per_prompt, T + new)  # fmt: skip
        for j in range(decoding.rows_per_prompt):
            end_row(i, j, generated[j, len(ids) :].tolist())


@dataclass
class SpeculativeStats:
    """Totals over prompts of self-speculative decoding (see :mod:`wmtp_cli.decoding`)."""

    new_tokens: int = 0
    decoding_forwards: int = 0
    seconds: float = 0.0
    draft_proposed: list[int] = field(default_factory=list)
    draft_accepted: list[int] = field(default_factory=list)

    def add(self, out) -> None:
        self.new_tokens += out.new_tokens
        self.decoding_forwards += out.decoding_forwards
        self.seconds += out.seconds
        if not self.draft_proposed:
            self.draft_proposed = [0] * len(out.draft_proposed)
            self.draft_accepted = [0] * len(out.draft_accepted)
        for i, (proposed, accepted) in enumerate(zip(out.draft_proposed, out.draft_accepted, strict=True)):
            self.draft_proposed[i] += proposed
            self.draft_accepted[i] += accepted

    def as_dict(self) -> dict:
        """Tokens per decoding forward, acceptance per draft head (head 2 first), tokens/s."""
        return {
            "tokens_per_forward": (self.new_tokens - 1) / self.decoding_forwards if self.decoding_forwards else None,
            "acceptance_per_head": {
                str(i + 2): (a / p if p else None)
                for i, (p, a) in enumerate(zip(self.draft_proposed, self.draft_accepted, strict=True))
            },
            "tokens_per_s": self.new_tokens / self.seconds if self.seconds else None,
            "new_tokens": self.new_tokens,
        }


@torch.no_grad()
def speculative_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 512,
    stop: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
    skip: Collection[int] = (),
    on_prompt: Callable[[int, str, SpeculativeStats], None] | None = None,
    n_draft: int | None = None,
    compile: bool | str = False,
) -> tuple[list[str], SpeculativeStats]:
    """Greedy completions by self-speculative decoding, one prompt at a time, and their statistics.

    The text equals what greedy :func:`sample_completions` gives (the decoding is token-for-token
    greedy); generation stops at EOS, at ``max_new_tokens`` or at the token that completes a stop
    sequence. Prompts whose indices are in ``skip`` are left out (an interrupted run has them; each
    prompt is decoded on its own, so the rest do not change); ``on_prompt(index, text, stats)`` receives
    each prompt's completion and its own statistics as soon as they exist. ``n_draft`` and ``compile`` are
    :func:`~wmtp_cli.decoding.speculative_generate`'s (``n_draft=0``: plain greedy decoding).
    """
    from wmtp_cli.decoding import speculative_generate

    device = next(model.parameters()).device
    stats = SpeculativeStats()
    stopper = StopStrings(tokenizer, stop)
    eos = eos_ids(model, tokenizer)
    skipped = set(skip)
    todo = [i for i in range(len(prompts)) if i not in skipped]
    texts = []
    for done, index in enumerate(todo, len(prompts) - len(todo) + 1):
        prompt_ids = tokenizer(prompts[index], add_special_tokens=True)["input_ids"]
        prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)

        def stopped(new_ids: list[int], prompt_ids=prompt_ids, prompt_text=prompt_text) -> bool:
            return stopper(prompt_ids, prompt_text, new_ids)

        out = speculative_generate(
            model, torch.tensor([prompt_ids], device=device), max_new_tokens, eos_token_id=eos,
            stop_check=stopped if stopper else None, n_draft=n_draft, compile=compile,
        )  # fmt: skip
        stats.add(out)
        new = out.sequences[0, len(prompt_ids) :].tolist()
        texts.append(truncate_at_stop(continuation(tokenizer, prompt_ids, new, prompt_text), stop))
        if on_prompt is not None:
            own = SpeculativeStats()
            own.add(out)
            on_prompt(index, texts[-1], own)
        if progress is not None:
            progress(done, len(prompts))
    return texts, stats
