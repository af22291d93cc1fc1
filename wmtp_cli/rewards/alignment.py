"""Moving per-token quantities between two tokenizers through character offsets.

A reward model has its own tokenizer, so its per-token numbers (attention mass, say) must be
carried onto the policy's tokens. Both tokenisations are of the same text; each source token's
value is shared among the target tokens its characters overlap, in proportion to the overlap, so
the total is preserved wherever the target tokens cover the source's characters.
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[int, int]


def spread_over_spans(values: Sequence[float], source: Sequence[Span], target: Sequence[Span]) -> list[float]:
    """Carry ``values`` on ``source`` character spans over to ``target`` spans by overlap.

    A source span with no characters (a special token) keeps its value out of the result.
    """
    out = [0.0] * len(target)
    order = sorted(range(len(target)), key=lambda j: target[j][0])
    for value, (start, end) in zip(values, source, strict=True):
        width = end - start
        if width <= 0 or value == 0:
            continue
        for j in order:
            t_start, t_end = target[j]
            if t_start >= end:
                break
            overlap = min(end, t_end) - max(start, t_start)
            if overlap > 0:
                out[j] += value * overlap / width
    return out
