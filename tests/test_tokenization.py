"""The prompt/completion split in tokens: joined tokenisation, no extra dummy-prefix space."""

from __future__ import annotations

import itertools

import pytest
from tiny_models import tiny_tokenizer

from wmtp_cli.data.tokenization import completion_token_spans, split_prompt_completion

PAIRS = [
    ("def f():\n", "    return 1\n"),
    ('def g(x):\n    """Twice x."""\n', "    return 2 * x\n"),
    ("Python 3 program:\n", "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"),
    ("x = ", "'café'  # naïve"),
    ("no completion", ""),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize(("prompt", "completion"), PAIRS)
def test_split_is_the_joined_tokenisation(tokenizer, prompt, completion):
    [(prompt_ids, completion_ids, spans)] = split_prompt_completion(tokenizer, [prompt], [completion])
    assert prompt_ids + completion_ids == tokenizer(prompt + completion).input_ids
    assert prompt_ids[0] == tokenizer.bos_token_id
    # Decoding the whole row and cutting the prompt's text gives back the completion exactly:
    # the completion's first token carries no extra dummy-prefix space.
    full = tokenizer.decode(prompt_ids + completion_ids, skip_special_tokens=True)
    assert full == prompt + completion
    assert len(spans) == len(completion_ids)
    assert "".join(completion[s:e] for s, e in spans) == completion


def test_completion_spans_start_at_zero_and_end_at_the_text_end(tokenizer):
    _ids, spans = completion_token_spans(tokenizer, "def f():\n", "    return 1\n")
    assert spans[0][0] == 0 and spans[-1][1] == len("    return 1\n")
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
