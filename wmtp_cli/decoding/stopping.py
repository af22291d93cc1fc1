"""Where a completion ends: its text after the prompt, cut at the first stop sequence, checked token by token.

A completion's text is its prompt and new tokens decoded together with the prompt's text cut off the
front (:func:`continuation`); decoding the new tokens alone would lose the leading space a SentencePiece
tokenizer drops from the first piece it decodes. Decoding the whole sequence after every token would
make a completion of L tokens cost O(L^2), so :class:`StopStrings` decodes a window of the last tokens,
long enough to hold any stop sequence, and confirms a hit on the whole text: a stop is never reported
where the whole text has none, and one the window sees is reported at the token that completes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop sequence (the stop itself excluded)."""
    cut = len(text)
    for sequence in stop:
        index = text.find(sequence)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def continuation(tokenizer, prompt_ids: Sequence[int], new_ids: Sequence[int], prompt_text: str | None = None) -> str:
    """The text ``new_ids`` add after ``prompt_ids`` (decoded whole, the decoded prompt cut off its front).

    ``prompt_text`` is the decoded prompt when the caller has it already.
    """
    prompt_ids, new_ids = list(prompt_ids), list(new_ids)
    if prompt_text is None:
        prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
    if full.startswith(prompt_text):
        return full[len(prompt_text) :]
    # decoding changed the prompt's own text (rare byte-level merges): the new tokens alone
    return tokenizer.decode(new_ids, skip_special_tokens=True)


class StopStrings:
    """Whether a completion's text contains one of ``stop``, asked after each new token.

    Call with the prompt's ids, its decoded text and the new ids so far. The check decodes the last
    ``window`` new tokens (twice the longest stop in characters, plus 8: every token but a skipped
    special one decodes to at least one character, so the window holds any stop that the newest token
    completes); a hit there is confirmed on the whole continuation, so a window decoded without its
    left context can never end a completion early.
    """

    def __init__(self, tokenizer, stop: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.window = 2 * max((len(s) for s in self.stop), default=0) + 8
        # A fast tokenizer's Rust decoder directly: the window check runs for every row at every step, and the
        # Python wrapper costs three times the decoding. A hit is confirmed with the wrapper's decode below.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._decode_window = (
            (lambda ids: backend.decode(ids, skip_special_tokens=True))
            if backend is not None
            else (lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
        )

    def __bool__(self) -> bool:
        return bool(self.stop)

    def __call__(self, prompt_ids: Sequence[int], prompt_text: str, new_ids: Sequence[int]) -> bool:
        if not self.stop:
            return False
        tail = self._decode_window(list(new_ids[-self.window :]))
        if not any(s in tail for s in self.stop):
            return False
        text = continuation(self.tokenizer, prompt_ids, new_ids, prompt_text)
        return any(s in text for s in self.stop)


def token_set(tokens: int | Iterable[int] | torch.Tensor | None) -> frozenset[int]:
    """A token id, several, or none (``generate()``'s forms of ``eos_token_id``) as a set."""
    if tokens is None:
        return frozenset()
    if isinstance(tokens, torch.Tensor):
        return frozenset(tokens.flatten().tolist())
    return frozenset({tokens}) if isinstance(tokens, int) else frozenset(int(t) for t in tokens)


def eos_ids(model, tokenizer) -> frozenset[int]:
    """The tokens that end a completion: the model's generation config's EOS (what ``generate()`` stops at), else
    the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return token_set(eos if eos is not None else tokenizer.eos_token_id)
