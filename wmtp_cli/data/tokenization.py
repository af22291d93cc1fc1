"""Where the prompt ends and the completion begins, in the policy's tokens.

The joined text ``prompt + completion`` is tokenised once (with BOS as the tokenizer adds it), and
the tokens are split by their character offsets: a token belongs to the completion when it ends
past the prompt's last character (so a token that straddles the boundary is the completion's).
Tokenising the two parts separately would not do: a SentencePiece tokenizer with a dummy prefix
(Llama's, so Meta's MTP models) would give the completion's first token an extra ``▁``, and a model
trained that way writes an extra space before every completion. The joined tokenisation is also
what the model sees at generation time, when it continues the tokenised prompt.

Training examples (labels) and dense rewards (one value per completion token) both use this split,
so they agree token for token.
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[int, int]


def _require_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"{type(tokenizer).__name__} gives no character offsets; a fast (tokenizers-backed) tokenizer is needed"
        )


def split_prompt_completion(
    tokenizer, prompts: Sequence[str], completions: Sequence[str]
) -> list[tuple[list[int], list[int], list[Span]]]:
    """For each pair: prompt ids (BOS included), completion ids, and each completion token's span.

    Spans are character ranges within the completion text; a straddling token's span starts at 0.
    """
    _require_fast(tokenizer)
    joined = [p + c for p, c in zip(prompts, completions, strict=True)]
    encoded = tokenizer(joined, return_offsets_mapping=True)
    out = []
    for prompt, ids, offsets in zip(prompts, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        boundary = len(prompt)
        first = next((i for i, (_, end) in enumerate(offsets) if end > boundary), len(ids))
        spans = [(max(start - boundary, 0), end - boundary) for start, end in offsets[first:]]
        out.append((list(ids[:first]), list(ids[first:]), spans))
    return out


def completion_token_spans(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[Span]]:
    """The completion's token ids after ``prompt`` and their character spans within ``completion``."""
    _, ids, spans = split_prompt_completion(tokenizer, [prompt], [completion])[0]
    return ids, spans
