"""Choosing each row's next token on its own: greedy, or nucleus sampling from the row's own random numbers.

Every sampled sequence has its own stream of uniform numbers, drawn on the CPU from a generator seeded
by :func:`sample_seed` (the run's seed, the problem and the sample's index): its t-th token inverts the
distribution at its t-th number. Every operation here works row by row, so a sample's tokens do not
depend on which other rows share its batch, how large the batch is, when the sample started, or the
device (given the same logits).
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(seed: int, problem: str | int, sample: int) -> int:
    """The seed of sample ``sample`` of ``problem`` in a run seeded with ``seed`` (a stable 63-bit hash)."""
    digest = hashlib.blake2b(f"{seed}\x00{problem}\x00{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def sample_uniforms(seed: int, count: int) -> list[float]:
    """The first ``count`` numbers of the uniform stream seeded with ``seed`` (one per token a sample may draw)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return torch.rand(count, generator=generator, dtype=torch.float64).tolist()


def choose_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor | None
) -> torch.Tensor:
    """The next token (B,) of each row of ``logits`` (B, V): the argmax when ``temperature == 0``, else a draw.

    A draw keeps the smallest set of most likely tokens whose probability reaches ``top_p`` (at least
    one; ties in token order), renormalises, and inverts the cumulative distribution at the row's
    number of ``uniforms`` (B,), each in [0, 1).
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    candidates = _nucleus_candidates(probs, top_p) if top_p < 1.0 else None
    if candidates is None:
        candidates = probs.sort(dim=-1, descending=True, stable=True)
    sorted_probs, order = candidates  # (B, C) each, most likely first
    if top_p < 1.0:
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    cumulative = sorted_probs.cumsum(-1)  # (B, C)
    target = uniforms.to(cumulative)[:, None] * cumulative[:, -1:]  # (B, 1)
    index = torch.searchsorted(cumulative, target, right=True)  # (B, 1)
    # u * total can round up to total itself: then take the last token that has probability, not one past it
    last_kept = (sorted_probs > 0).sum(-1, keepdim=True) - 1
    index = torch.minimum(index, last_kept)
    return order.gather(-1, index)[:, 0]


# Most likely tokens looked at before sorting the whole vocabulary: a nucleus rarely holds more.
_CANDIDATES = 64


def _nucleus_candidates(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ``_CANDIDATES`` most likely tokens of each row sorted as a full stable sort would sort them, when
    every row's nucleus lies among them; None otherwise (sort everything).

    A full sort of the vocabulary costs several times a decoding step's sampling at small sizes. The
    slice is exact when, in every row, its tokens before the last already reach ``top_p`` (so the last is
    out) and the last is strictly less likely than every kept token (so no token outside ties with a kept
    one and could precede it in token order).
    """
    k = _CANDIDATES
    if probs.shape[-1] <= k:
        return None
    top, index = probs.topk(k, dim=-1)  # most likely first; the order of ties is unspecified
    index, by_index = index.sort(dim=-1)  # ties in token order, as a stable sort of the whole row puts them
    top = top.gather(-1, by_index)
    top, by_probability = top.sort(dim=-1, descending=True, stable=True)
    index = index.gather(-1, by_probability)
    before = top.cumsum(-1) - top
    kept = before < top_p
    smallest_kept = top.masked_fill(~kept, float("inf")).amin(-1)
    if not bool(((before[:, -1] >= top_p) & (top[:, -1] < smallest_kept)).all()):
        return None
    return top, index
