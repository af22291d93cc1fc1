"""wmtp_cli.losses against plain references written from DESIGN.md section 3 (loops over b, t, k; math.exp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wmtp_cli.losses import (
    IGNORE_INDEX,
    completion_states,
    critic_weights,
    head_targets,
    lambda_returns,
    ntp_weights,
    per_head_cross_entropy,
    return_targets,
    token_deltas,
    uniform_weights,
    valid_heads,
    value_loss,
    value_loss_sum,
    weight_statistics,
    weighted_head_loss,
    weighted_mtp_loss,
    weighted_mtp_loss_sum,
    weights_from_importance,
)

X = IGNORE_INDEX
VOCAB = 6
# prompt prefix; right padding; a single trained token; nothing trained; trained from position 0
LABELS = torch.tensor(
    [
        [X, X, 3, 1, 4, 1, 5],
        [X, 2, 0, 3, X, X, X],
        [X, X, X, 4, X, X, X],
        [X, X, X, X, X, X, X],
        [1, 2, 3, 0, 4, 2, 1],
    ]
)
SHORT = torch.tensor([[X, 2], [1, 3]])  # T = 2 < n for n = 3, 4


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_values(labels: torch.Tensor, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(labels.shape, generator=gen(seed), dtype=dtype)


def rand_logits(labels: torch.Tensor, n: int, seed: int = 1) -> torch.Tensor:
    B, T = labels.shape
    return torch.randn(B, T, n, VOCAB, generator=gen(seed))


# ---- plain references -------------------------------------------------------------------------------------


def ref_K(labels: list[int], t: int, n: int) -> list[int]:
    """K_t: heads k (1-based) whose target x_{t+k} exists and is trained."""
    return [k for k in range(1, n + 1) if t + k < len(labels) and labels[t + k] != X]


def ref_weights(values, labels, n, tau=1.0, abs_delta=False, zscore=False, mix=0.0, eps=1e-6):
    out = []
    for V, lab in zip(values.tolist(), labels.tolist(), strict=True):
        T = len(lab)
        imp = [0.0] + [V[j] - V[j - 1] for j in range(1, T)]
        if abs_delta:
            imp = [abs(d) for d in imp]
        if zscore:
            tr = [imp[j] for j in range(T) if lab[j] != X]
            mean = sum(tr) / len(tr) if tr else 0.0
            std = math.sqrt(sum((d - mean) ** 2 for d in tr) / len(tr)) if tr else 0.0
            scale = std + eps if len(tr) > 1 else 1.0
            imp = [(d - mean) / scale for d in imp]
        row = []
        for t in range(T):
            K = ref_K(lab, t, n)
            z = sum(math.exp(imp[t + k] / tau) for k in K)
            w = [math.exp(imp[t + k] / tau) / z if k in K else 0.0 for k in range(1, n + 1)]
            if mix > 0:
                w = [(1 - mix) * w[k - 1] + mix / len(K) if k in K else 0.0 for k in range(1, n + 1)]
            row.append(w)
        out.append(row)
    return torch.tensor(out, dtype=torch.float64).reshape(labels.shape[0], labels.shape[1], n)


def ref_loss(logits, labels, weights):
    """sum_t sum_k w CE / #{t : K_t nonempty ... carrying weight}, one scalar at a time (keeps autograd)."""
    B, T, n, _ = logits.shape
    lab = labels.tolist()
    total, count = 0.0, 0
    for b in range(B):
        for t in range(T):
            carries = False
            for k in range(1, n + 1):
                w = float(weights[b, t, k - 1])
                carries = carries or w > 0
                if k in ref_K(lab[b], t, n):
                    row = logits[b, t, k - 1]
                    total = total + w * (torch.logsumexp(row, 0) - row[lab[b][t + k]])
            count += carries
    return total / max(count, 1)


def ref_states(lab: list[int]) -> list[bool]:
    tr = [j for j, y in enumerate(lab) if y != X]
    if not tr:
        return [False] * len(lab)
    return [max(tr[0] - 1, 0) <= t <= tr[-1] for t in range(len(lab))]


def ref_returns(kind, values, reward, labels, dense, gamma, lam=None):
    out = []
    for b, lab in enumerate(labels.tolist()):
        V, d, r = values[b].tolist(), dense[b].tolist(), float(reward[b])
        states = ref_states(lab)
        row = [0.0] * len(lab)
        if any(states):
            Tc = max(j for j, y in enumerate(lab) if y != X)
            ts = [t for t in range(len(lab)) if states[t]]
            if kind == "mc":
                for t in ts:
                    row[t] = sum(gamma ** (j - t - 1) * d[j] for j in range(t + 1, Tc + 1)) + gamma ** (Tc - t) * r
            elif kind == "td0":
                for t in ts:
                    row[t] = d[t + 1] + gamma * V[t + 1] if t < Tc else r
            else:  # the lambda-return recursion, backwards from the terminal state
                row[Tc] = r
                for t in reversed(ts[:-1]):
                    row[t] = d[t + 1] + gamma * ((1 - lam) * V[t + 1] + lam * row[t + 1])
        out.append(row)
    return torch.tensor(out, dtype=torch.float32)


# ---- weights ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [LABELS, SHORT])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_head_targets_and_valid_heads(labels, n):
    lab = labels.tolist()
    B, T = labels.shape
    tgt = [[[lab[b][t + k] if t + k < T else X for k in range(1, n + 1)] for t in range(T)] for b in range(B)]
    val = [[[k in ref_K(lab[b], t, n) for k in range(1, n + 1)] for t in range(T)] for b in range(B)]
    assert torch.equal(head_targets(labels, n), torch.tensor(tgt))
    assert torch.equal(valid_heads(labels, n), torch.tensor(val))


def test_token_deltas():
    V = rand_values(LABELS)
    ref = [[0.0] + [row[j] - row[j - 1] for j in range(1, len(row))] for row in V.tolist()]
    torch.testing.assert_close(token_deltas(V), torch.tensor(ref, dtype=torch.float64))


@pytest.mark.parametrize("labels", [LABELS, SHORT])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"tau": 0.5},
        {"tau": 3.0, "abs_delta": True},
        {"zscore": True},
        {"abs_delta": True, "zscore": True, "tau": 0.7},
        {"mix": 0.2},
        {"zscore": True, "mix": 1.0, "tau": 2.0},
    ],
)
def test_critic_weights_match_reference(labels, n, opts):
    V = rand_values(labels, seed=n)
    ref = ref_weights(V, labels, n, **opts)
    kw = {"abs_delta": opts.get("abs_delta", False), "zscore": opts.get("zscore", False)}
    w = critic_weights(V, labels, n, opts.get("tau", 1.0), uniform_mix=opts.get("mix", 0.0), **kw)
    assert w.dtype == torch.float64
    torch.testing.assert_close(w, ref)
    w32 = critic_weights(V.float(), labels, n, opts.get("tau", 1.0), uniform_mix=opts.get("mix", 0.0), **kw)
    assert w32.dtype == torch.float32
    torch.testing.assert_close(w32, ref.float())


def test_weights_structure_and_dtypes():
    w = critic_weights(rand_values(LABELS, dtype=torch.bfloat16) * 50, LABELS, 4, 0.1)
    assert w.dtype == torch.float32 and not torch.isnan(w).any()
    valid = valid_heads(LABELS, 4)
    assert torch.equal(w[~valid], torch.zeros_like(w[~valid]))  # exactly 0 off K_t
    sums = w.sum(-1)
    torch.testing.assert_close(sums[valid.any(-1)], torch.ones_like(sums[valid.any(-1)]))
    assert torch.equal(sums[~valid.any(-1)], torch.zeros_like(sums[~valid.any(-1)]))  # no K_t: all 0, no NaN
    assert (w[3] == 0).all()  # the row with nothing trained


def test_weights_from_importance_is_delta_path():
    V = rand_values(LABELS)
    imp = token_deltas(V)
    assert torch.equal(weights_from_importance(imp, LABELS, 3, 0.5), critic_weights(V, LABELS, 3, 0.5))


def test_zscore_single_token_row_is_only_centred():
    # a lone trained token has std 0: centring makes its delta 0 rather than dividing by eps
    imp = torch.tensor([[0.0, 0.0, 0.0, 5.0]])
    labels = torch.tensor([[X, X, X, 2]])
    w = weights_from_importance(imp, labels, 2, zscore=True)
    assert torch.equal(w, uniform_weights(labels, 2))


@pytest.mark.parametrize("labels", [LABELS, SHORT])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_constant_critic_gives_uniform_exactly(labels, n):
    V = torch.full(labels.shape, 0.37)
    u = uniform_weights(labels, n)
    B, T = labels.shape
    lab = labels.tolist()
    ref = [[[1 / len(K) if k in (K := ref_K(lab[b], t, n)) else 0.0 for k in range(1, n + 1)] for t in range(T)]
           for b in range(B)]  # fmt: skip
    torch.testing.assert_close(u, torch.tensor(ref, dtype=torch.float32))
    for opts in [{}, {"temperature": 0.3}, {"abs_delta": True, "zscore": True}]:
        assert torch.equal(critic_weights(V, labels, n, **opts), u)


def test_ntp_weights():
    w = ntp_weights(LABELS, 3)
    lab = LABELS.tolist()
    ref = [[[1.0 if k == 1 and 1 in ref_K(row, t, 3) else 0.0 for k in (1, 2, 3)] for t in range(7)] for row in lab]
    assert torch.equal(w, torch.tensor(ref))


def test_weight_statistics():
    w = critic_weights(rand_values(LABELS), LABELS, 3, uniform_mix=0.1)
    stats = weight_statistics(w)
    rows = [r for b in w.tolist() for r in b if sum(r) > 0]
    mean = [sum(r[k] for r in rows) / len(rows) for k in range(3)]
    ent = sum(-sum(x * math.log(x) for x in r if x > 0) for r in rows) / len(rows)
    torch.testing.assert_close(stats["mean_per_head"], torch.tensor(mean, dtype=w.dtype))
    torch.testing.assert_close(stats["entropy"], torch.tensor(ent, dtype=w.dtype))
    assert int(stats["positions"]) == len(rows)
    empty = weight_statistics(torch.zeros(2, 3, 4))
    assert torch.equal(empty["mean_per_head"], torch.zeros(4)) and float(empty["entropy"]) == 0.0
    assert int(empty["positions"]) == 0


def test_weight_validation_errors():
    V = rand_values(LABELS)
    with pytest.raises(ValueError, match="temperature"):
        critic_weights(V, LABELS, 2, 0.0)
    with pytest.raises(ValueError, match="uniform_mix"):
        critic_weights(V, LABELS, 2, uniform_mix=1.5)
    with pytest.raises(ValueError, match="n_future"):
        critic_weights(V, LABELS, 0)
    with pytest.raises(ValueError, match="shape"):
        weights_from_importance(V[:, :-1], LABELS, 2)


# ---- cross-entropy and L_WMTP ----------------------------------------------------------------------------


def test_per_head_cross_entropy():
    n = 3
    logits = rand_logits(LABELS, n).to(torch.bfloat16)
    tgt = head_targets(LABELS, n)
    ce = per_head_cross_entropy(logits, tgt)
    assert ce.dtype == torch.float32 and ce.shape == tgt.shape
    L, lab = logits.float().tolist(), tgt.tolist()
    ref = [
        [
            [
                math.log(sum(math.exp(v) for v in L[b][t][k])) - L[b][t][k][lab[b][t][k]] if lab[b][t][k] != X else 0.0
                for k in range(n)
            ]
            for t in range(7)
        ]
        for b in range(5)
    ]
    torch.testing.assert_close(ce, torch.tensor(ref))
    torch.testing.assert_close(per_head_cross_entropy(logits[:, :, 1], tgt[..., 1]), ce[..., 1])  # one head


@pytest.mark.parametrize("labels", [LABELS, SHORT])
@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("kind", ["critic", "uniform", "ntp"])
def test_weighted_mtp_loss_value_and_grad(labels, n, kind):
    weights = {
        "critic": critic_weights(rand_values(labels), labels, n, 0.5, uniform_mix=0.1),
        "uniform": uniform_weights(labels, n),
        "ntp": ntp_weights(labels, n),
    }[kind]
    logits = rand_logits(labels, n).requires_grad_()
    loss = weighted_mtp_loss(logits, labels, weights)
    (grad,) = torch.autograd.grad(loss, logits)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = ref_loss(ref_logits, labels, weights)
    (ref_grad,) = torch.autograd.grad(ref, ref_logits) if torch.is_tensor(ref) else (torch.zeros_like(logits),)
    torch.testing.assert_close(loss, torch.as_tensor(ref, dtype=torch.float32))
    torch.testing.assert_close(grad, ref_grad)
    _, count = weighted_mtp_loss_sum(logits, labels, weights)
    assert count.dtype == torch.int64 and not count.requires_grad
    if kind != "ntp":  # the normaliser is #{t : K_t nonempty}
        assert int(count) == int(valid_heads(labels, n).any(-1).sum())


@pytest.mark.parametrize("n", [1, 2, 4])
def test_ntp_weights_give_causal_lm_loss(n):
    logits = rand_logits(LABELS, n)
    loss = weighted_mtp_loss(logits, LABELS, ntp_weights(LABELS, n))
    lm = F.cross_entropy(logits[:, :-1, 0].flatten(0, 1), LABELS[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss, lm)


def test_all_masked_batch_gives_zero_not_nan():
    labels = torch.full((2, 5), X)
    logits = rand_logits(labels, 3).requires_grad_()
    loss = weighted_mtp_loss(logits, labels, uniform_weights(labels, 3))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("n", [1, 3, 4])
def test_weighted_head_loss_sums_to_weighted_mtp_loss(n):
    weights = critic_weights(rand_values(LABELS), LABELS, n)
    logits = rand_logits(LABELS, n)
    total, count = weighted_mtp_loss_sum(logits, LABELS, weights)
    parts = [weighted_head_loss(logits[:, :, k - 1], LABELS, weights[..., k - 1], k) for k in range(1, n + 1)]
    torch.testing.assert_close(sum(p[0] for p in parts) / count, weighted_mtp_loss(logits, LABELS, weights))
    torch.testing.assert_close(sum(p[0] for p in parts), total)
    ce = per_head_cross_entropy(logits, head_targets(LABELS, n))
    valid = valid_heads(LABELS, n)
    for k, (_, ce_sum, cnt) in enumerate(parts, start=1):
        ref_sum = sum(float(ce[b, t, k - 1]) for b in range(5) for t in range(7) if valid[b, t, k - 1])
        torch.testing.assert_close(ce_sum, torch.tensor(ref_sum))
        assert int(cnt) == int(valid[..., k - 1].sum())


def test_no_gradient_reaches_values():
    V = rand_values(LABELS, dtype=torch.float32).requires_grad_()
    w = critic_weights(V, LABELS, 4)
    assert not w.requires_grad
    logits = rand_logits(LABELS, 4).requires_grad_()
    weighted_mtp_loss(logits, LABELS, w).backward()
    assert V.grad is None and logits.grad is not None


# ---- returns and L_VF --------------------------------------------------------------------------------------


def test_completion_states():
    ref = [ref_states(row) for row in LABELS.tolist()]
    assert torch.equal(completion_states(LABELS), torch.tensor(ref))
    assert torch.equal(completion_states(SHORT), torch.tensor([[True, True], [True, True]]))


def test_mc_with_gamma_one_is_the_reward():
    reward = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.25])
    R = return_targets("mc", rand_values(LABELS), reward, LABELS)
    states = completion_states(LABELS)
    assert torch.equal(R, torch.where(states, reward[:, None].expand(5, 7), torch.zeros(5, 7)))


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.0])
@pytest.mark.parametrize("dense", [False, True])
def test_returns_match_reference(gamma, dense):
    V = rand_values(LABELS, seed=3).requires_grad_()
    reward = torch.tensor([1.0, 0.0, 0.5, 1.0, -0.25])
    d = torch.randn(LABELS.shape, generator=gen(4)) if dense else None
    d_ref = d if dense else torch.zeros(LABELS.shape)
    args = (V, reward, LABELS, d)
    Vd = V.detach()
    mc, td0 = ref_returns("mc", Vd, reward, LABELS, d_ref, gamma), ref_returns("td0", Vd, reward, LABELS, d_ref, gamma)
    torch.testing.assert_close(return_targets("mc", *args, gamma=gamma), mc)
    torch.testing.assert_close(return_targets("td0", *args, gamma=gamma), td0)
    torch.testing.assert_close(return_targets("gae", *args, gamma=gamma, gae_lambda=1.0), mc)
    torch.testing.assert_close(return_targets("gae", *args, gamma=gamma, gae_lambda=0.0), td0)
    gae = return_targets("gae", *args, gamma=gamma, gae_lambda=0.7)
    torch.testing.assert_close(gae, ref_returns("gae", Vd, reward, LABELS, d_ref, gamma, lam=0.7))
    assert gae.dtype == torch.float32 and not gae.requires_grad
    assert torch.equal(gae[~completion_states(LABELS)], torch.zeros_like(gae[~completion_states(LABELS)]))


def test_lambda_returns_short_and_scalar_reward():
    V = rand_values(SHORT)
    ref = ref_returns("gae", V, torch.tensor([2.0, 2.0]), SHORT, torch.zeros(SHORT.shape), 0.9, lam=0.5)
    torch.testing.assert_close(lambda_returns(V, 2.0, SHORT, gamma=0.9, lam=0.5), ref)


def test_value_loss():
    V = rand_values(LABELS, dtype=torch.float32).requires_grad_()
    R = return_targets("td0", V, torch.ones(5), LABELS, gamma=0.9)
    states = completion_states(LABELS)
    loss = value_loss(V, R, states)
    rows = [(float(V.detach()[b, t]) - float(R[b, t])) ** 2 for b in range(5) for t in range(7) if states[b, t]]
    torch.testing.assert_close(loss, torch.tensor(sum(rows) / len(rows)))
    total, count = value_loss_sum(V, R, states)
    assert int(count) == len(rows)
    torch.testing.assert_close(total, torch.tensor(sum(rows)))
    loss.backward()
    ref_grad = torch.where(states, 2 * (V.detach() - R) / len(rows), torch.zeros(5, 7))
    torch.testing.assert_close(V.grad, ref_grad)
    none = torch.zeros_like(states)
    assert float(value_loss(V, R, none).detach()) == 0.0


def test_return_validation_errors():
    V = rand_values(LABELS)
    with pytest.raises(ValueError, match="unknown return kind"):
        return_targets("td1", V, torch.ones(5), LABELS)
    with pytest.raises(ValueError, match="reward"):
        return_targets("mc", V, torch.ones(4), LABELS)
    with pytest.raises(ValueError, match="must both be"):
        return_targets("mc", V[:, :-1], torch.ones(5), LABELS)
