"""Batched sampling: continuations keep their exact text, stops cut, seeds repeat."""

from __future__ import annotations

import torch
from tiny_models import make_tiny_mtp_model, tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from wmtp_cli.decoding.generation import continuations, sample_completions, truncate_at_stop


def test_continuation_keeps_leading_indentation(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    prompts = ["def f():\n", "x = [1,\n"]
    added = ["    return 1\n", "  2]  # é\n"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True) if tokenizer.pad_token else None
    if batch is None:
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
    rows = []
    for i, text in enumerate(added):
        new = tokenizer(prompts[i] + text, add_special_tokens=True).input_ids[len(tokenizer(prompts[i]).input_ids) :]
        rows.append(torch.cat([batch["input_ids"][i], torch.tensor(new)]))
    width = max(len(r) for r in rows)
    generated = torch.stack(
        [torch.nn.functional.pad(r, (0, width - len(r)), value=tokenizer.eos_token_id) for r in rows]
    )
    assert continuations(tokenizer, batch["input_ids"], batch["attention_mask"], generated, n=1) == added


def test_truncate_at_the_first_stop():
    assert truncate_at_stop("a\nb[DONE]c\ndef", ["\ndef", "[DONE]"]) == "a\nb"
    assert truncate_at_stop("abc", []) == "abc"


def test_sampling_shapes_and_seeds(tmp_path):
    folder = make_tiny_mtp_model(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    side = tokenizer.padding_side
    prompts = ["def f(x):\n", "import os\n", "class A:\n"]
    first = sample_completions(model, tokenizer, prompts, n=2, max_new_tokens=6, batch_size=4, seed=3)
    again = sample_completions(model, tokenizer, prompts, n=2, max_new_tokens=6, batch_size=4, seed=3)
    assert len(first) == 3 and all(len(c) == 2 for c in first)
    assert first == again
    greedy = sample_completions(model, tokenizer, prompts, n=2, temperature=0, max_new_tokens=6)
    assert all(a == b for a, b in greedy)
    assert tokenizer.padding_side == side  # restored
