"""Weight diagnostics against plain loops written from their definitions (wmtp_cli/losses/diagnostics.py)."""

from __future__ import annotations

import math

import pytest
import torch

from wmtp_cli.losses import IGNORE_INDEX, critic_weights, ntp_weights, uniform_weights, valid_heads
from wmtp_cli.losses.diagnostics import diagnostic_sums, diagnostics_from_sums, received_weights, weight_diagnostics

N = 4
LABELS = torch.tensor([
    [IGNORE_INDEX, IGNORE_INDEX, 5, 6, 7, 8, 9, IGNORE_INDEX],
    [IGNORE_INDEX, 3, 4, IGNORE_INDEX, 5, 6, IGNORE_INDEX, IGNORE_INDEX],
])  # fmt: skip


def reference(weights, labels, importance=None):
    """Plain loops: every quantity of the module docstring, position by position, token by token."""
    B, T, n = weights.shape
    kls, effs, peaks = [], [], []
    for b in range(B):
        for t in range(T):
            K = [k for k in range(1, n + 1) if t + k < T and labels[b, t + k] != IGNORE_INDEX]
            if not K:
                continue
            w = [float(weights[b, t, k - 1]) for k in K]
            kls.append(sum(x * math.log(x * len(K)) for x in w if x > 0))
            effs.append(math.exp(-sum(x * math.log(x) for x in w if x > 0)) / len(K))
            peaks.append(max(w) > 2 / len(K))
    out = {"kl": sum(kls) / len(kls), "effective_heads": sum(effs) / len(effs), "peaked": sum(peaks) / len(peaks)}
    if importance is None:
        out["delta_correlation"] = None
        return out
    xs, ys = [], []
    for b in range(B):
        for j in range(1, T):
            if labels[b, j] == IGNORE_INDEX:
                continue
            xs.append(sum(float(weights[b, j - k, k - 1]) for k in range(1, n + 1) if j - k >= 0))
            ys.append(abs(float(importance[b, j])))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    out["delta_correlation"] = cov / (sx * sy) if sx > 1e-9 and sy > 1e-9 else None
    return out


def close(got, want):
    for key, value in want.items():
        if value is None:
            assert got[key] is None, (key, got[key])
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, got[key], value)


def test_uniform_weights_are_uniform():
    w = uniform_weights(LABELS, N)
    got = weight_diagnostics(w, valid_heads(LABELS, N), LABELS)
    assert got["kl"] == pytest.approx(0, abs=1e-7) and got["effective_heads"] == pytest.approx(1, abs=1e-7)
    assert got["peaked"] == 0 and got["delta_correlation"] is None
    close(got, reference(w, LABELS))


def test_one_hot_weights_give_log_k():
    """ntp's weights are one-hot where head 1 is valid: KL log |K_t|, effective heads 1/|K_t|, always peaked where
    |K_t| > 1 (a position where only head 1 is valid is uniform too)."""
    w = ntp_weights(LABELS, N)
    valid = valid_heads(LABELS, N)
    got = weight_diagnostics(w, valid, LABELS)
    close(got, reference(w, LABELS))
    sizes = valid.sum(-1)[valid.any(-1) & valid[..., 0]].double()
    carrying = valid.any(-1).sum()
    assert got["kl"] == pytest.approx(float(torch.log(sizes).sum() / carrying), rel=1e-9)


def test_critic_weights_and_the_delta_correlation():
    torch.manual_seed(0)
    values = torch.randn(LABELS.shape, dtype=torch.float64)
    deltas = torch.diff(values, dim=1, prepend=values[:, :1])
    for tau in (0.3, 1.0, 5.0):
        w = critic_weights(values, LABELS, N, tau)
        got = weight_diagnostics(w, valid_heads(LABELS, N), LABELS, deltas)
        close(got, reference(w, LABELS, deltas))
    sharp = weight_diagnostics(critic_weights(values, LABELS, N, 0.3), valid_heads(LABELS, N), LABELS, deltas)
    flat = weight_diagnostics(critic_weights(values, LABELS, N, 5.0), valid_heads(LABELS, N), LABELS, deltas)
    assert sharp["kl"] > flat["kl"] > 0  # a lower temperature moves the weights further from uniform


def test_sums_add_across_batches():
    """What training reduces over micro-batches and processes: the halves' sums give the whole's diagnostics."""
    torch.manual_seed(1)
    values = torch.randn(LABELS.shape)
    w = critic_weights(values, LABELS, N, 0.5)
    deltas = torch.diff(values, dim=1, prepend=values[:, :1])
    valid = valid_heads(LABELS, N)
    halves = [diagnostic_sums(w[i : i + 1], valid[i : i + 1], LABELS[i : i + 1], deltas[i : i + 1]) for i in (0, 1)]
    close(diagnostics_from_sums(halves[0] + halves[1]), weight_diagnostics(w, valid, LABELS, deltas))


def test_received_weights_is_the_sum_over_heads_that_predict_a_token():
    w = torch.rand(2, 6, 3)
    r = received_weights(w)
    for b in range(2):
        for j in range(6):
            want = sum(float(w[b, j - k, k - 1]) for k in range(1, 4) if j - k >= 0)
            assert float(r[b, j]) == pytest.approx(want, rel=1e-6)
