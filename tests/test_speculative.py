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
            logits = out.logits.clone()  # (1, T, n, V)
            for t in range(input_ids.shape[1]):
                for k in range(1, self.n_future_tokens):
                    target = past + t + 1 + k
                    if target < len(self.oracle):
                        token = self.oracle[target] if self.right(past + t, k) else (self.oracle[target] + 1) % V
                        logits[0, t, k] = -1e4
                        logits[0, t, k, token] = 1e4
            out.logits = logits
        return out


def tiny_model(n_future: int, seed: int = 0, cls=MTPForCausalLM) -> MTPForCausalLM:
    torch.manual_seed(seed)
    config = MTPConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=n_future + 2,
        num_attention_heads=4, num_key_value_heads=2, n_future_tokens=n_future, initializer_range=0.2,
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


def test_crop_removes_from_every_layer():
    from wmtp_cli.decoding.speculative import _crop

    cache = DynamicCache()
    for layer in range(3):
        cache.update(torch.zeros(1, 2, 7, 4), torch.zeros(1, 2, 7, 4), layer)
    _crop(cache, 7)  # nothing to remove must leave it whole
    assert [layer.get_seq_length() for layer in cache.layers] == [7, 7, 7]
    _crop(cache, 4)
    assert [layer.get_seq_length() for layer in cache.layers] == [4, 4, 4]


def test_bench_script_runs_on_a_tiny_model(tmp_path, capsys):
    from tiny_models import make_tiny_mtp_model

    folder = make_tiny_mtp_model(tmp_path / "mtp", n_future=4)
    spec = importlib.util.spec_from_file_location("bench_speculative", REPO_ROOT / "scripts" / "bench_speculative.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "bench.json"
    code = bench.main(
        [str(folder), "--n-prompts", "2", "--max-new-tokens", "12", "--device", "cpu", "--json", str(report)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "identical outputs: 2/2" in printed and "speed-up" in printed
    summary = json.loads(report.read_text())["summary"]
    assert summary["identical"] == 2 and len(summary["accepted_per_head"]) == 3
