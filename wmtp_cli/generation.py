"""Sampling completions from a causal LM in batches (model samples for rewards and for evaluation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
) -> list[list[str]]:
    """``n`` completions for each prompt, as text after the prompt (cut at the first stop sequence).

    Prompts are left-padded and generated for ``batch_size`` at a time, each repeated ``n`` times in
    the batch. ``temperature == 0`` means greedy decoding (then the ``n`` samples are identical).
    Sampling is seeded per batch from ``seed``, so a rerun gives the same completions.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    results: list[list[str]] = []
    per_batch = max(1, batch_size // n) if n <= batch_size else 1
    try:
        for start in range(0, len(prompts), per_batch):
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
            for i in range(len(chunk)):
                results.append([truncate_at_stop(t, stop) for t in texts[i * n : (i + 1) * n]])
            if progress is not None:
                progress(len(results), len(prompts))
    finally:
        tokenizer.padding_side = padding_side
    return results
