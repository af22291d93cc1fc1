"""Sampling with continuous batching: exact texts, early stops, per-sample seeds, finished rows out of the batch."""

from __future__ import annotations

import random

import pytest
import torch
from tiny_models import make_tiny_mtp_model, tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from wmtp_cli.decoding.continuous import ContinuousBatcher, Row
from wmtp_cli.decoding.generation import sample_completions, speculative_completions
from wmtp_cli.decoding.sampling import choose_tokens, sample_seed
from wmtp_cli.decoding.stopping import StopStrings, continuation, truncate_at_stop

PROMPTS = ["def f(x):\n", "import os\n", "class A:\n    def g(self):", "x = 1", "for i in range(10):\n    print(i)\n",
           "a", "return a + b"]  # fmt: skip
STOP = ("\n#", "\ndef", "\n    ")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_mtp_model(tmp_path_factory.mktemp("generation") / "m")
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def tiny64(tiny):
    """The tiny model in float64: the rounding of batched matrix products, which differs with the batch's size on
    the CPU (in float32 too, at a near-tie of two tokens), cannot reach a draw, so what the test sees is the
    design: each sample's tokens depend on its own seed and prompt only."""
    model, tokenizer = tiny
    return AutoModelForCausalLM.from_pretrained(model.name_or_path, dtype=torch.float64).eval(), tokenizer


def test_continuation_keeps_leading_indentation(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    for prompt, added in [("def f():\n", "    return 1\n"), ("x = [1,\n", "  2]  # é\n")]:
        prompt_ids = tokenizer(prompt).input_ids
        new = tokenizer(prompt + added).input_ids[len(prompt_ids) :]
        assert continuation(tokenizer, prompt_ids, new) == added


def test_truncate_at_the_first_stop():
    assert truncate_at_stop("a\nb[DONE]c\ndef", ["\ndef", "[DONE]"]) == "a\nb"
    assert truncate_at_stop("abc", []) == "abc"


def test_sampling_shapes_and_seeds(tiny):
    model, tokenizer = tiny
    prompts = ["def f(x):\n", "import os\n", "class A:\n"]
    first = sample_completions(model, tokenizer, prompts, n=2, max_new_tokens=6, batch_size=4, seed=3)
    again = sample_completions(model, tokenizer, prompts, n=2, max_new_tokens=6, batch_size=4, seed=3)
    other = sample_completions(model, tokenizer, prompts, n=2, max_new_tokens=6, batch_size=4, seed=4)
    assert len(first) == 3 and all(len(c) == 2 for c in first)
    assert first == again and first != other
    greedy = sample_completions(model, tokenizer, prompts, n=2, temperature=0, max_new_tokens=6)
    assert all(a == b for a, b in greedy)


def generate_one_at_a_time(model, tokenizer, prompts, max_new_tokens, stop):
    """The reference: ``generate()`` on each prompt alone, the text cut at the first stop afterwards."""
    texts = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.eos_token_id)  # fmt: skip
        new = out[0, ids.shape[1] :].tolist()
        texts.append(truncate_at_stop(continuation(tokenizer, ids[0].tolist(), new), stop))
    return texts


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_greedy_completions_equal_generate_and_speculative(tiny, batch_size):
    model, tokenizer = tiny
    expected = generate_one_at_a_time(model, tokenizer, PROMPTS, 24, STOP)
    got = sample_completions(model, tokenizer, PROMPTS, n=1, temperature=0, max_new_tokens=24,
                             batch_size=batch_size, stop=STOP)  # fmt: skip
    assert [c[0] for c in got] == expected
    assert any(len(text) < 24 for text in expected)  # some rows stop early: rows leave the batch mid-run
    speculative, _ = speculative_completions(model, tokenizer, PROMPTS, max_new_tokens=24, stop=STOP)
    assert speculative == expected


def test_samples_depend_on_their_seed_alone(tiny64):
    model, tokenizer = tiny64
    kwargs = dict(n=3, temperature=0.8, top_p=0.9, max_new_tokens=16, stop=STOP, seed=7)
    by_batch = {b: sample_completions(model, tokenizer, PROMPTS, batch_size=b, **kwargs) for b in (1, 2, 5, 21)}
    assert all(samples == by_batch[1] for samples in by_batch.values())
    assert len({text for samples in by_batch[1] for text in samples}) > len(PROMPTS)  # the draws differ
    # a resumed run generates the rest alone: the same samples
    rest = sample_completions(model, tokenizer, PROMPTS, batch_size=4, skip={0, 3, 4}, **kwargs)
    assert rest == [by_batch[1][i] for i in (1, 2, 5, 6)]
    # a sample is seeded by its problem's key, not by where the problem is in the list
    keys = [f"task/{i}" for i in range(len(PROMPTS))]
    keyed = sample_completions(model, tokenizer, PROMPTS, batch_size=4, problem_keys=keys, **kwargs)
    backwards = sample_completions(model, tokenizer, PROMPTS[::-1], batch_size=3, problem_keys=keys[::-1], **kwargs)
    assert backwards[::-1] == keyed


def test_each_problem_is_handed_on_when_its_last_sample_ends(tiny):
    model, tokenizer = tiny
    handed, counts = {}, []
    returned = sample_completions(model, tokenizer, PROMPTS, n=2, max_new_tokens=12, batch_size=3, stop=STOP,
                                  on_problem=handed.__setitem__, progress=lambda done, total: counts.append(done),
                                  skip={1})  # fmt: skip
    assert sorted(handed) == [0, 2, 3, 4, 5, 6]
    assert returned == [handed[i] for i in sorted(handed)]
    assert counts == list(range(2, len(PROMPTS) + 1))  # the skipped problem counts as done


def test_finished_rows_leave_the_batch_and_waiting_rows_take_their_slots(tiny):
    """Rows that end after set numbers of tokens: every decoding row-step is a live row's, and the number of
    forwards is what a plain simulation of the slots gives."""
    model, tokenizer = tiny
    lengths = [5, 1, 9, 2, 2, 7, 3, 4]
    prompts = [tokenizer(p).input_ids for p in PROMPTS[:4]]
    rows = [Row(prompt=i // 2, sample=i % 2) for i in range(len(lengths))]
    ended = []
    batcher = ContinuousBatcher(
        model, prompts, slots=3, max_new_tokens=50, choose=lambda logits, batch: logits.argmax(-1),
        ends=lambda row: len(row.tokens) == lengths[2 * row.prompt + row.sample], on_row=ended.append,
    )  # fmt: skip
    stats = batcher.run(rows)
    assert sorted(len(row.tokens) for row in ended) == sorted(lengths)
    assert stats.row_steps == sum(n - 1 for n in lengths) and stats.finished_row_steps == 0
    assert stats.prefills == len(prompts) and stats.new_tokens == sum(lengths)

    # reference: slots filled in order; a row takes its first token when admitted, one more per forward
    waiting, live, forwards = list(lengths), [], 0
    while waiting or live:
        while len(live) < 3 and waiting:
            left = waiting.pop(0) - 1
            if left:
                live.append(left)
        if live:
            forwards += 1
            live = [n - 1 for n in live if n > 1]
    assert stats.forwards == forwards


def reference_choice(probs: list[float], top_p: float, u: float) -> int:
    """Nucleus sampling written plainly: the most likely tokens until their mass reaches top_p, then the
    first token whose cumulative (renormalised) probability exceeds u."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])  # sorted() is stable: ties keep token order
    kept, mass = [], 0.0
    for i in order:
        if mass >= top_p:
            break
        kept.append(i)
        mass += probs[i]
    total, cumulative = sum(probs[i] for i in kept), 0.0
    for i in kept:
        cumulative += probs[i] / total
        if cumulative > u:
            return i
    return kept[-1]


def test_choose_tokens_against_a_plain_reference():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.5, -1.0], [0.0, 3.0, 0.0, 2.9, 1.0]], dtype=torch.float64)
    assert choose_tokens(logits, 0.0, 1.0, None).tolist() == [0, 1]
    for temperature, top_p in [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (1.0, 0.01)]:
        probs = torch.softmax(logits / temperature, -1).tolist()
        for u in [0.0, 0.1, 0.33, 0.5, 0.77, 0.999999]:
            uniforms = torch.tensor([u, u], dtype=torch.float64)
            got = choose_tokens(logits, temperature, top_p, uniforms).tolist()
            assert got == [reference_choice(p, top_p, u) for p in probs], (temperature, top_p, u)


def test_sample_seeds_are_stable_and_distinct():
    assert sample_seed(0, "HumanEval/0", 0) == sample_seed(0, "HumanEval/0", 0)
    seeds = {sample_seed(s, p, j) for s in (0, 1) for p in ("a", "b", 3) for j in range(4)}
    assert len(seeds) == 24 and all(0 <= s < 2**63 for s in seeds)


def test_stop_check_agrees_with_the_whole_text_at_every_token(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    stop = ("\ndef ", "\n#", "pass")
    check = StopStrings(tokenizer, stop)
    rng = random.Random(0)
    pieces = ["\n", "def ", "#", " x", "pa", "ss", "    ", "é", "return", "(", ")", "\nde", "f "]
    prompt_ids = tokenizer("def f():\n").input_ids
    prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    for _ in range(30):
        new = tokenizer(prompt_text + "".join(rng.choice(pieces) for _ in range(12))).input_ids[len(prompt_ids) :]
        for end in range(1, len(new) + 1):  # up to the token that completes the first stop, where generation ends
            whole = any(s in continuation(tokenizer, prompt_ids, new[:end]) for s in stop)
            assert check(prompt_ids, prompt_text, new[:end]) == whole
            if whole:
                break


def test_the_nucleus_from_the_most_likely_tokens_equals_a_full_sort(monkeypatch):
    from wmtp_cli.decoding import sampling

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 300, generator=generator, dtype=torch.float64) * 4  # peaked: nuclei of a few tokens
    logits[0, :10] = 9.0  # an exact tie inside the nucleus
    logits[1, :] = 0.0  # flat: the nucleus is most of the vocabulary, so the whole row is sorted
    uniforms = torch.rand(64, generator=generator, dtype=torch.float64)
    assert sampling._nucleus_candidates(torch.softmax(logits[2:], -1), 0.9) is not None  # the short path runs
    fast = choose_tokens(logits, 0.8, 0.9, uniforms)
    monkeypatch.setattr(sampling, "_CANDIDATES", 10**6)
    assert torch.equal(fast, choose_tokens(logits, 0.8, 0.9, uniforms))


def test_a_causal_lm_without_heads_is_sampled_through_generate(tmp_path):
    """The fallback for other causal LMs: greedy equals ``generate()`` prompt by prompt, stop sequences cut, and
    samples are seeded by their problem (the same whatever else is in the run)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(tmp_path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    expected = generate_one_at_a_time(model, tokenizer, PROMPTS[:3], 12, STOP)
    greedy = sample_completions(model, tokenizer, PROMPTS[:3], n=2, temperature=0, max_new_tokens=12, stop=STOP)
    assert greedy == [[text, text] for text in expected]
    kwargs = dict(n=2, temperature=0.9, top_p=0.95, max_new_tokens=8, seed=1)
    everything = sample_completions(model, tokenizer, PROMPTS[:3], **kwargs)
    assert sample_completions(model, tokenizer, PROMPTS[:3], skip={0}, **kwargs) == everything[1:]
