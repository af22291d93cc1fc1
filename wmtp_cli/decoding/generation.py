"""Sampling completions from a causal LM in batches (model samples for rewards and for evaluation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop sequence (the stop itself excluded)."""
    cut = len(text)
    for sequence in stop:
        index = text.find(sequence)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def continuations(tokenizer, prompt_ids, prompt_mask, generated, n: int) -> list[str]:
    """The text each generated row adds after its prompt.

    Decoding the new tokens alone would be wrong for SentencePiece tokenizers, which drop the
    leading space of the first piece they decode (an indented first line would lose a space), so
    each row is decoded whole and the decoded prompt is cut off its front.
    """
    width = prompt_ids.shape[1]
    texts = []
    for row in range(generated.shape[0]):
        own_prompt = prompt_ids[row // n][prompt_mask[row // n].bool()]
        prompt_text = tokenizer.decode(own_prompt, skip_special_tokens=True)
        full = tokenizer.decode(torch.cat([own_prompt, generated[row, width:]]), skip_special_tokens=True)
        if full.startswith(prompt_text):
            texts.append(full[len(prompt_text) :])
        else:  # decoding changed the prompt's own text (rare byte-level merges): fall back
            texts.append(tokenizer.decode(generated[row, width:], skip_special_tokens=True))
    return texts


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
    skip: int = 0,
    on_batch: Callable[[int, list[list[str]]], None] | None = None,
) -> list[list[str]]:
    """``n`` completions for each prompt, as text after the prompt (cut at the first stop sequence).

    Prompts are left-padded and generated for ``batch_size`` at a time (:func:`prompts_per_batch`
    prompts), each repeated ``n`` times in the batch. ``temperature == 0`` means greedy decoding (then
    the ``n`` samples are identical). Sampling is seeded per batch from ``seed`` and the index of the
    batch's first prompt, so a rerun gives the same completions.

    Resuming: ``skip`` (a multiple of :func:`prompts_per_batch`) leaves out the first prompts, whose
    completions an interrupted run already has; the rest are batched and seeded exactly as in a run
    that did not skip, so they are the same. Only their completions are returned. ``on_batch(first,
    completions)`` receives each batch's completions as soon as they exist (``first``: the index of its
    first prompt); ``progress(done, total)`` counts the skipped prompts as done.
    """
    per_batch = prompts_per_batch(n, batch_size)
    if skip % per_batch:
        raise ValueError(f"skip={skip} is not a multiple of the {per_batch} prompts per batch")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    results: list[list[str]] = []
    try:
        for start in range(skip, len(prompts), per_batch):
            chunk = list(prompts[start : start + per_batch])
            batch = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
            torch.manual_seed(seed + start)
            sampling = temperature > 0
            generated = model.generate(
                **batch,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=top_p if sampling else None,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n if sampling else 1,  # greedy gives one answer; it is repeated below
                pad_token_id=tokenizer.pad_token_id,
            )  # (len(chunk) * n, prompt_len + new), or (len(chunk), ...) when greedy
            if not sampling:
                generated = generated.repeat_interleave(n, dim=0)
            texts = continuations(tokenizer, batch["input_ids"], batch["attention_mask"], generated, n)
            completions = [[truncate_at_stop(t, stop) for t in texts[i * n : (i + 1) * n]] for i in range(len(chunk))]
            results.extend(completions)
            if on_batch is not None:
                on_batch(start, completions)
            if progress is not None:
                progress(skip + len(results), len(prompts))
    finally:
        tokenizer.padding_side = padding_side
    return results


def prompts_per_batch(n: int, batch_size: int) -> int:
    """Prompts in one batch of :func:`sample_completions`: ``batch_size`` sequences of ``n`` samples each, at
    least one prompt."""
    return max(1, batch_size // n)


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
    skip: int = 0,
    on_prompt: Callable[[int, str, SpeculativeStats], None] | None = None,
) -> tuple[list[str], SpeculativeStats]:
    """Greedy completions by self-speculative decoding, one prompt at a time, and their statistics.

    The text equals what greedy :func:`sample_completions` gives (the decoding is token-for-token
    greedy); generation stops at EOS, at ``max_new_tokens`` or once a stop sequence appears. ``skip``
    leaves out the first prompts (an interrupted run has them; each prompt is decoded on its own, so the
    rest do not change); ``on_prompt(index, text, stats)`` receives each prompt's completion and its own
    statistics as soon as they exist.
    """
    from wmtp_cli.decoding import speculative_generate

    device = next(model.parameters()).device
    stats = SpeculativeStats()
    texts = []
    for done, prompt in enumerate(prompts[skip:], skip + 1):
        prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)  # (1, T)
        prompt_text = tokenizer.decode(prompt_ids[0], skip_special_tokens=True)

        def stopped(new_ids: list[int], prompt_ids=prompt_ids, prompt_text=prompt_text) -> bool:
            full = tokenizer.decode(prompt_ids[0].tolist() + new_ids, skip_special_tokens=True)
            return any(s in full[len(prompt_text) :] for s in stop)

        out = speculative_generate(
            model, prompt_ids, max_new_tokens, eos_token_id=tokenizer.eos_token_id, stop_check=stopped if stop else None
        )
        stats.add(out)
        mask = torch.ones_like(prompt_ids)
        (text,) = continuations(tokenizer, prompt_ids, mask, out.sequences, 1)
        texts.append(truncate_at_stop(text, stop))
        if on_prompt is not None:
            own = SpeculativeStats()
            own.add(out)
            on_prompt(done - 1, texts[-1], own)
        if progress is not None:
            progress(done, len(prompts))
    return texts, stats
