"""Self-speculative decoding: token-for-token plain greedy decoding, its counts, and the KV cache invariant."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from transformers import DynamicCache

import wmtp_cli  # noqa: F401  (registers the auto classes)
from wmtp_cli.decoding import greedy_generate, speculative_generate
from wmtp_cli.model import MTPConfig, MTPForCausalLM

V = 97
REPO_ROOT = Path(__file__).resolve().parents[1]


class OracleDraftMTP(MTPForCausalLM):
    """Head 1 is the real (random) model; heads 2..n copy a known greedy continuation.

    With ``oracle`` set to plain greedy decoding's full sequence, all-heads calls make head k+1 at
    absolute position p predict ``oracle[p + 1 + k]`` where ``right(p, k)`` holds and a wrong token
    elsewhere, so acceptance is controlled while head 1 (which alone decides the output) still reads
    the whole context through the KV cache: a stale or missing cache entry would change the output.
    """

    oracle: list[int] | None = None

    @staticmethod
    def right(position: int, k: int) -> bool:
        return True

    def forward(self, input_ids=None, cache=None, return_all_heads=False, **kwargs):
        past = cache.get_seq_length() if cache is not None else 0  # before this call appends to it
        out = super().forward(input_ids, cache=cache, return_all_heads=return_all_heads, **kwargs)
        if return_all_heads and self.oracle is not None:
            logits = out.logits.clone()  # (1, kept, n, V): the last ``kept`` of the T fed positions
            first = input_ids.shape[1] - logits.shape[1]
            for t in range(first, input_ids.shape[1]):
                for k in range(1, self.n_future_tokens):
                    target = past + t + 1 + k
                    if target < len(self.oracle):
                        token = self.oracle[target] if self.right(past + t, k) else (self.oracle[target] + 1) % V
                        logits[0, t - first, k] = -1e4
                        logits[0, t - first, k, token] = 1e4
            out.logits = logits
        return out


def tiny_model(n_future: int, seed: int = 0, cls=MTPForCausalLM, kv_heads: int = 2) -> MTPForCausalLM:
    torch.manual_seed(seed)
    config = MTPConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=n_future + 2,
        num_attention_heads=4, num_key_value_heads=kv_heads, n_future_tokens=n_future, initializer_range=0.2,
    )  # fmt: skip
    model = cls(config).eval()
    model.generation_config.eos_token_id = None  # each call says whether it stops at EOS
    model.generation_config.pad_token_id = 0
    return model


def prompt(length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, V, (1, length), generator=torch.Generator().manual_seed(seed))  # (1, T)


def reference(model, ids: torch.Tensor, max_new_tokens: int, eos=None) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos)


def oracle_model(n_future: int, ids: torch.Tensor, max_new_tokens: int, right=None) -> tuple[OracleDraftMTP, list]:
    model = tiny_model(n_future, cls=OracleDraftMTP)
    expected = reference(model, ids, max_new_tokens)  # head-1-only calls: the oracle plays no part
    model.oracle = expected[0].tolist()
    if right is not None:
        model.right = right
    return model, expected


def assert_cache_invariant(model, out, all_heads: bool = True) -> None:
    """Every layer holds the sequence but its last token, and continuing from it equals a full forward.

    ``all_heads=False`` for a head-1-only cache (plain greedy, ``n_draft=0``): trunk and head 1 only.
    """
    seq = out.sequences
    layers = model.config.num_hidden_layers if all_heads else model.config.n_trunk_layers + 1
    assert [layer.get_seq_length() for layer in out.cache.layers] == [seq.shape[1] - 1] * layers
    with torch.no_grad():
        step = model(seq[:, -1:], cache=out.cache, use_cache=True, return_all_heads=all_heads).logits[0, -1]
        full = model(seq, use_cache=False, return_all_heads=all_heads).logits[0, -1]  # (n, V) or (V,)
    assert_close(step, full, atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on threads that share busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("n_future", [2, 4])
@pytest.mark.parametrize("max_new_tokens", [1, 2, 7, 30])
def test_random_model_equals_generate_and_greedy(n_future, max_new_tokens):
    model = tiny_model(n_future)
    for seed, length in [(0, 1), (1, 5), (2, 12)]:
        ids = prompt(length, seed)
        expected = reference(model, ids, max_new_tokens)
        spec = speculative_generate(model, ids, max_new_tokens)
        greedy = greedy_generate(model, ids, max_new_tokens)
        assert torch.equal(spec.sequences, expected)
        assert torch.equal(greedy.sequences, expected)
        assert spec.new_tokens == greedy.new_tokens == max_new_tokens
        assert greedy.forwards == max_new_tokens
        assert 1 <= spec.forwards <= max_new_tokens
        assert len(spec.accepted_per_head) == n_future - 1


@pytest.mark.parametrize("n_future", [2, 4])
def test_stops_at_eos_like_generate(n_future):
    model = tiny_model(n_future, seed=3)
    for seed in range(3):
        ids = prompt(6, seed)
        free = reference(model, ids, 25)[0, ids.shape[1] :].tolist()
        for index in (0, 3, 11):
            eos = free[index]
            stop_at = free.index(eos)  # the first occurrence is where generation ends
            expected = reference(model, ids, 25, eos=eos)
            spec = speculative_generate(model, ids, 25, eos_token_id=eos)
            greedy = greedy_generate(model, ids, 25, eos)
            for out, all_heads in ((spec, True), (greedy, False)):
                assert torch.equal(out.sequences, expected)
                assert out.new_tokens == stop_at + 1 and out.sequences[0, -1].item() == eos
                assert_cache_invariant(model, out, all_heads)
        # A list of EOS ids stops at whichever comes first.
        eos_list = [free[9], free[4]]
        out = speculative_generate(model, ids, 25, eos_token_id=eos_list)
        assert torch.equal(out.sequences, reference(model, ids, 25, eos=eos_list))


@pytest.mark.parametrize("n_future", [2, 4])
def test_cache_holds_the_sequence_but_its_last_token(n_future):
    model = tiny_model(n_future, seed=1)
    for max_new_tokens in (1, 9, 20):
        out = speculative_generate(model, prompt(7, max_new_tokens), max_new_tokens)
        assert out.cache.get_seq_length() == out.sequences.shape[1] - 1
        assert_cache_invariant(model, out)
    greedy = greedy_generate(model, prompt(7, 0), 9)
    assert_cache_invariant(model, greedy, all_heads=False)


@pytest.mark.parametrize("n_future", [2, 4])
def test_drafts_always_right_give_n_tokens_per_forward(n_future):
    ids = prompt(5, 0)
    blocks = 6
    max_new_tokens = 1 + blocks * n_future  # the prefill's token, then full blocks
    model, expected = oracle_model(n_future, ids, max_new_tokens)
    out = speculative_generate(model, ids, max_new_tokens)
    assert torch.equal(out.sequences, expected)
    assert out.accepted_per_head == [1.0] * (n_future - 1)
    assert out.forwards == 1 + blocks
    assert out.tokens_per_forward == n_future
    assert_cache_invariant(model, out)


@pytest.mark.parametrize("n_future", [2, 4])
def test_drafts_always_right_never_overrun_the_budget(n_future):
    ids = prompt(4, 1)
    for max_new_tokens in (2, 3, 5, 14):  # the last block is cut short
        model, expected = oracle_model(n_future, ids, max_new_tokens)
        out = speculative_generate(model, ids, max_new_tokens)
        assert torch.equal(out.sequences, expected)
        assert out.new_tokens == max_new_tokens
        assert out.forwards == 1 + math.ceil((max_new_tokens - 1) / n_future)
        assert all(rate == 1.0 for rate in out.accepted_per_head if not math.isnan(rate))
        assert_cache_invariant(model, out)


def test_eos_inside_an_accepted_block_cuts_there():
    n_future = 4
    ids = prompt(5, 2)
    model, free = oracle_model(n_future, ids, 20)
    new = free[0, ids.shape[1] :].tolist()
    for index in range(1, 10):  # positions 1..4 are the first block, 5..8 the second
        eos = new[index]
        expected = reference(model, ids, 20, eos=eos)
        out = speculative_generate(model, ids, 20, eos_token_id=eos)
        assert torch.equal(out.sequences, expected)
        assert_cache_invariant(model, out)


def test_partly_right_drafts_crop_the_cache_and_keep_the_output():
    n_future = 4
    ids = prompt(6, 3)
    model, expected = oracle_model(n_future, ids, 40, right=lambda p, k: (5 * p + 3 * k) % 7 not in (0, 2))
    out = speculative_generate(model, ids, 40)
    assert torch.equal(out.sequences, expected)
    rates = out.accepted_per_head
    # Rejections after some accepted drafts mean crops of 1 to n - 2 positions happened.
    assert 0 < rates[0] < 1 and 0 < rates[1] < 1
    assert 1 < out.tokens_per_forward < n_future
    assert_cache_invariant(model, out)


def test_acceptance_counts_only_drafts_that_were_reached():
    n_future = 4
    ids = prompt(5, 4)
    max_new_tokens = 1 + 2 * 10
    model, expected = oracle_model(n_future, ids, max_new_tokens, right=lambda p, k: k != 2)  # head 3 always wrong
    out = speculative_generate(model, ids, max_new_tokens)
    assert torch.equal(out.sequences, expected)
    assert out.accepted_per_head[:2] == [1.0, 0.0]
    assert math.isnan(out.accepted_per_head[2])  # head 4 drafts only after head 3's, which never passes
    assert out.draft_proposed == [10, 9, 0]  # the last step has room for one draft only
    assert out.tokens_per_forward == 2.0


def test_fewer_drafting_heads():
    ids = prompt(5, 5)
    max_new_tokens = 1 + 2 * 8
    model, expected = oracle_model(4, ids, max_new_tokens)
    out = speculative_generate(model, ids, max_new_tokens, n_draft=1)
    assert torch.equal(out.sequences, expected)
    assert out.accepted_per_head == [1.0]
    assert out.tokens_per_forward == 2.0


def test_no_drafts_is_plain_greedy():
    ids = prompt(5, 6)
    model, expected = oracle_model(4, ids, 15)  # drafts would all be right: n_draft=0 must ignore them
    out = speculative_generate(model, ids, 15, n_draft=0)
    assert torch.equal(out.sequences, expected)
    assert out.forwards == out.new_tokens == 15
    assert out.tokens_per_forward == 1.0
    assert out.accepted_per_head == []
    model.oracle = None
    assert_cache_invariant(model, out, all_heads=False)


def test_single_head_model_decodes_greedily():
    model = tiny_model(1)
    ids = prompt(4, 7)
    out = speculative_generate(model, ids, 10)
    assert torch.equal(out.sequences, reference(model, ids, 10))
    assert out.tokens_per_forward == 1.0


@pytest.mark.parametrize("right", [None, lambda p, k: (p + k) % 3 != 0])
def test_stop_check_cuts_after_the_same_token_as_greedy(right):
    n_future = 4
    ids = prompt(5, 8)
    model, free = oracle_model(n_future, ids, 30, right=right)
    new = free[0, ids.shape[1] :].tolist()
    for index in (0, 2, 6, 13):
        pair = new[index - 1 : index + 1] if index else new[:1]  # a "stop sequence" of one or two tokens

        def stop_check(tokens, pair=pair):
            return tokens[-len(pair) :] == pair

        spec = speculative_generate(model, ids, 30, stop_check=stop_check)
        greedy = greedy_generate(model, ids, 30, stop_check=stop_check)
        cut = next(i for i in range(len(new)) if stop_check(new[: i + 1]))
        assert spec.sequences[0, ids.shape[1] :].tolist() == new[: cut + 1]
        assert torch.equal(spec.sequences, greedy.sequences)
        assert_cache_invariant(model, spec)


def test_output_stats():
    model = tiny_model(2)
    out = speculative_generate(model, prompt(3, 9), 1)
    assert out.forwards == 1 and out.new_tokens == 1 and math.isnan(out.tokens_per_forward)
    assert out.draft_proposed == [0] and math.isnan(out.accepted_per_head[0])
    assert out.seconds > 0 and out.sequences.shape == (1, 4)


def test_rejects_bad_arguments():
    model = tiny_model(2)
    with pytest.raises(ValueError, match="n_draft"):
        speculative_generate(model, prompt(3, 0), 5, n_draft=2)
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        speculative_generate(model, torch.zeros(2, 3, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, prompt(3, 0), 0)


def test_bench_script_runs_on_a_tiny_model(tmp_path, capsys):
    from tiny_models import make_tiny_mtp_model

    folder = make_tiny_mtp_model(tmp_path / "mtp", n_future=4)
    spec = importlib.util.spec_from_file_location("bench_speculative", REPO_ROOT / "scripts" / "bench_speculative.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "bench.json"
    options = ["--n-prompts", "2", "--max-new-tokens", "12", "--device", "cpu", "--runs", "2"]
    code = bench.main([str(folder), *options, "--json", str(report)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "identical outputs: 2/2 (in each of 2 runs)" in printed and "speed-up" in printed
    assert "plain greedy" in printed and "tokens per decoding forward" in printed and "run 2/2" in printed
    written = json.loads(report.read_text())
    summary = written["summary"]
    assert summary["identical"] == 2 and len(summary["accepted_per_head"]) == 3
    assert len(summary["runs"]) == len(summary["speedup_per_run"]) == 2
    assert sorted(summary["speedup_per_run"])[0] <= summary["speedup"] <= sorted(summary["speedup_per_run"])[1]
    assert all(len(r["greedy"]["seconds"]) == len(r["speculative"]["seconds"]) == 2 for r in written["records"])


# The heads as one batched computation (StackedHeads) against the per-head blocks.


def per_head_and_stacked(model, ids, attention_mask=None, caches=(None, None)):
    """All heads' logits (B, T, n, V) the per-head way and the stacked way, each with its own cache."""
    per_cache, stacked_cache = caches
    with torch.no_grad():
        h, rotary, mask = model.embed_and_trunk(ids, attention_mask, cache=per_cache)
        per_head = torch.stack(
            [model.head_logits(k, h, rotary, mask, per_cache) for k in range(model.n_future_tokens)], dim=2
        )
        h, rotary, mask = model.embed_and_trunk(ids, attention_mask, cache=stacked_cache)
        stacked = model.all_head_logits(h, rotary, mask, stacked_cache)
    return per_head, stacked


def assert_same_cache(a: DynamicCache, b: DynamicCache, layers: int) -> None:
    assert len(a.layers) == len(b.layers) == layers
    for x, y in zip(a.layers, b.layers, strict=True):
        assert_close(x.keys, y.keys, atol=1e-5, rtol=1e-5)
        assert_close(x.values, y.values, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_future", [1, 2, 3, 4])
@pytest.mark.parametrize("kv_heads", [2, 4])  # grouped-query and plain multi-head attention
def test_stacked_heads_equal_the_per_head_blocks(n_future, kv_heads):
    model = tiny_model(n_future, seed=n_future, kv_heads=kv_heads)
    ids = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(kv_heads))
    per_head, stacked = per_head_and_stacked(model, ids)  # no cache
    assert stacked.shape == (2, 11, n_future, V)
    assert_close(stacked, per_head, atol=1e-5, rtol=1e-5)

    caches = (DynamicCache(), DynamicCache())
    # A prompt, then a block after cached positions (speculative decoding's verify step), then one token.
    for piece in (ids[:, :6], ids[:, 6:10], ids[:, 10:]):
        per_head, stacked = per_head_and_stacked(model, piece, caches=caches)
        assert_close(stacked, per_head, atol=1e-5, rtol=1e-5)
    assert_same_cache(*caches, layers=model.config.num_hidden_layers)
    assert caches[1].get_seq_length() == 11


def test_stacked_heads_with_left_padding():
    model = tiny_model(3, seed=5)
    ids = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(5))
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, :3] = 0  # row 1 is left-padded: a (B, 1, T, S) mask that the stacked heads repeat per head
    per_head, stacked = per_head_and_stacked(model, ids, attention_mask)
    assert_close(stacked, per_head, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("keep", [1, 3])
def test_stacked_heads_keep_the_last_positions(keep):
    """With logits_to_keep the stacked heads run queries and MLP on the last positions only; keys for all."""
    model = tiny_model(4, seed=9)
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(keep))
    attention_mask = torch.ones(2, 10, dtype=torch.long)
    attention_mask[0, :2] = 0
    for mask in (None, attention_mask):
        per_cache, stacked_cache = DynamicCache(), DynamicCache()
        with torch.no_grad():
            full = model(ids, attention_mask=mask, cache=per_cache, use_cache=True, return_all_heads=True).logits
            kept = model(
                ids, attention_mask=mask, cache=stacked_cache, use_cache=True, return_all_heads=True,
                logits_to_keep=keep,
            ).logits  # fmt: skip
        assert kept.shape == (2, keep, 4, V)
        assert_close(kept, full[:, -keep:], atol=1e-5, rtol=1e-5)
        assert_same_cache(per_cache, stacked_cache, layers=model.config.num_hidden_layers)
    # After cached positions too (a query block at the tail of the keys).
    with torch.no_grad():
        step = model(ids[:, :4], cache=stacked_cache, use_cache=True, return_all_heads=True, logits_to_keep=keep)
        ref = model(ids[:, :4], cache=per_cache, use_cache=True, return_all_heads=True).logits[:, -keep:]
    assert_close(step.logits, ref, atol=1e-5, rtol=1e-5)


def test_all_heads_forward_uses_the_stacked_heads_only_without_gradients():
    model = tiny_model(4, seed=6)
    ids = prompt(9, 6)
    with torch.no_grad():
        fast = model(ids, return_all_heads=True, use_cache=False).logits
    slow = model(ids, return_all_heads=True, use_cache=False, labels=ids)  # gradients on: the per-head blocks
    slow.loss.backward()
    assert all(p.grad is not None for p in model.heads[0].parameters())
    assert_close(fast, slow.logits.detach(), atol=1e-5, rtol=1e-5)
    assert "_stacked_heads" in model.__dict__  # built by the no-gradient call, not a module attribute
    assert not any("stacked" in name for name in model.state_dict())


def test_stacked_heads_follow_a_weight_change():
    model = tiny_model(2, seed=7)
    ids = prompt(6, 7)
    first = model.stacked_heads()
    assert model.stacked_heads() is first  # built once
    with torch.no_grad():
        model.heads[1].mlp.down_proj.weight.mul_(-1.5)  # in place, as an optimiser step does
    assert model.stacked_heads() is not first
    per_head, stacked = per_head_and_stacked(model, ids)
    assert_close(stacked, per_head, atol=1e-5, rtol=1e-5)


class DoubledLinear(torch.nn.Linear):
    """A projection whose output is not ``x @ weight.T`` alone, as an unmerged LoRA layer's is."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_heads_that_are_not_plain_linears_are_not_stacked():
    model = tiny_model(3, seed=10)
    ids = prompt(7, 10)
    assert model.stacked_heads() is not None
    old = model.heads[2].mlp.up_proj
    model.heads[2].mlp.up_proj = DoubledLinear(old.in_features, old.out_features, bias=False)
    model.heads[2].mlp.up_proj.weight = old.weight  # the same weight: only the module tells them apart
    assert model.stacked_heads() is None
    per_head, stacked = per_head_and_stacked(model, ids)
    assert_close(stacked, per_head, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        doubled = model(ids, return_all_heads=True, use_cache=False).logits
        model.heads[2].mlp.up_proj = old
        assert model.stacked_heads() is not None
        plain = model(ids, return_all_heads=True, use_cache=False).logits
    assert_close(doubled[:, :, :2], plain[:, :, :2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(doubled[:, :, 2], plain[:, :, 2], atol=1e-3)  # the wrapper's effect was kept


def test_block_cache_holds_what_a_dynamic_cache_holds():
    from wmtp_cli.decoding.speculative import BlockCache

    model = tiny_model(4, seed=8)
    ids = prompt(10, 8)
    block, dynamic = BlockCache(model.config.num_hidden_layers, model.config.n_trunk_layers, 12), DynamicCache()
    with torch.no_grad():
        for piece in (ids[:, :7], ids[:, 7:]):
            a = model(piece, cache=block, use_cache=True, return_all_heads=True).logits
            b = model(piece, cache=dynamic, use_cache=True, return_all_heads=True).logits
            assert_close(a, b, atol=1e-5, rtol=1e-5)
        block.crop(8)
        dynamic.crop(-2)  # transformers' crop: a negative count removes that many positions
        assert block.lengths == [8] * model.config.num_hidden_layers
        assert_same_cache(block.to_dynamic(), dynamic, layers=model.config.num_hidden_layers)
        with pytest.raises(ValueError, match="12 positions"):
            model(prompt(5, 9), cache=block, use_cache=True, return_all_heads=True)
    # Head-1-only calls fill the trunk and head 1; the stacked heads then refuse the cache, as for DynamicCache.
    head1 = BlockCache(model.config.num_hidden_layers, model.config.n_trunk_layers, 12)
    with torch.no_grad():
        model(ids[:, :4], cache=head1, use_cache=True)
        assert len(head1.to_dynamic().layers) == model.config.n_trunk_layers + 1
        with pytest.raises(ValueError, match="head-1-only"):
            model(ids[:, 4:6], cache=head1, use_cache=True, return_all_heads=True)


# Compiled decoding over a static cache (wmtp_cli.decoding.compiled). The "aot_eager" backend traces the same
# graphs as inductor without generating C++ kernels (seconds, not a minute); scripts/bench_speculative.py
# --compile checks inductor's tokens on the demo's model.


@pytest.mark.parametrize("eos", [None, 5])
def test_compiled_greedy_and_speculative_decoding_give_greedy_tokens(eos):
    model = tiny_model(4, seed=3)
    for seed, length, budget in [(1, 5, 30), (2, 9, 17), (3, 3, 1)]:  # prompts of two capacities share graphs
        ids = prompt(length, seed)
        expected = reference(model, ids, budget, eos=eos)
        plain = greedy_generate(model, ids, budget, eos_token_id=eos, compile="aot_eager")
        spec = speculative_generate(model, ids, budget, eos_token_id=eos, compile="aot_eager")
        assert torch.equal(plain.sequences, expected) and torch.equal(spec.sequences, expected)
        assert plain.forwards == expected.shape[1] - length  # one forward per token
        assert spec.forwards <= plain.forwards
        assert_cache_invariant(model, plain, all_heads=False)
        assert_cache_invariant(model, spec)


def test_compiled_steps_reuse_their_graphs_across_calls():
    from torch._dynamo.utils import counters

    model = tiny_model(2, seed=4)
    counters.clear()
    for seed in range(4):  # different prompts, lengths and tokens: the same capacity and block lengths
        greedy_generate(model, prompt(4 + seed, seed), 6, compile="aot_eager")
    assert counters["stats"]["unique_graphs"] == 1
