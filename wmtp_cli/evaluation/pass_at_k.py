"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

With n samples of a problem of which c pass, the chance that at least one of k samples drawn without
replacement passes is

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)

(the product form avoids huge binomials). A benchmark's pass@k is the mean over its problems. k must
not exceed n.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` of the ``n`` samples passes, when ``c`` of them pass."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    remaining = 1.0
    for i in range(n - c + 1, n + 1):
        remaining *= 1.0 - k / i
    return 1.0 - remaining


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[int, float]:
    """``{k: mean pass@k}`` over problems given as (n, c) pairs; a k above some problem's n is left out."""
    counts = list(counts)
    if not counts:
        return {}
    smallest_n = min(n for n, _ in counts)
    return {k: sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks if k <= smallest_n}
