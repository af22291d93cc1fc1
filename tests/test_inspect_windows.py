"""``wmtp inspect-weights`` on texts longer than the model's context: overlapping windows, as documented."""

from __future__ import annotations

import json

import pytest
import torch
from training_fixtures import scored_setup

from wmtp_cli.inspection import find_sources, inspect_weights, windowed_values
from wmtp_cli.inspection.locate import load_sources


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """(model, tokenizer, value head, recipe path) of a tiny model with a trained critic."""
    recipe = scored_setup(tmp_path_factory.mktemp("windows"))
    model, tokenizer, head, _ = load_sources(find_sources(None, recipe.parent / "runs" / "r" / "critic"))
    torch.nn.init.normal_(head.out.weight, std=0.5)  # a value that varies, so a wrong window shows
    return model, tokenizer, head, recipe


def plain_values(model, head, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return head(model.embed_and_trunk(torch.tensor([ids]))[0])[0].float()


def test_a_text_within_the_context_runs_whole(loaded):
    model, _, head, _ = loaded
    ids = torch.randint(3, 100, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        got = windowed_values(model, head, ids, context=40)
    assert torch.equal(got, plain_values(model, head, ids))


@pytest.mark.parametrize("context", [8, 12, 13])
def test_every_value_comes_from_a_window_with_half_a_window_before_it(loaded, context):
    """The reference: each value equals the plain forward of some window ([BOS] + a stretch of the text, at most
    ``context`` tokens) in which the position has at least half the stretch before it, or is in the first window."""
    model, _, head, _ = loaded
    bos = 1
    body = torch.randint(3, 100, (45,), generator=torch.Generator().manual_seed(context)).tolist()
    ids = [bos, *body]
    with torch.no_grad():
        got = windowed_values(model, head, ids, context=context, prefix=1)
    span = context - 1
    first = plain_values(model, head, ids[:context])
    torch.testing.assert_close(got[:context], first)  # the first window is the text's start: causal, exact
    for p in range(span, len(body)):
        candidates = []
        for s in range(max(0, p - span + 1), p - span // 2 + 1):
            window = [bos, *body[s : s + span]]
            if len(window) == context:
                candidates.append(plain_values(model, head, window)[1 + p - s])
        assert any(torch.allclose(got[1 + p], c, rtol=1.3e-6, atol=1e-5) for c in candidates), p


def test_long_text_has_a_note_and_complete_rows(loaded):
    model, tokenizer, head, _ = loaded
    text = "def f(a):\n    return a + 1\n" * 12
    model.config.max_position_embeddings, saved = 32, model.config.max_position_embeddings
    try:
        reports = []
        result = inspect_weights(model, tokenizer, head, text, progress=lambda *args: reports.append(args))
    finally:
        model.config.max_position_embeddings = saved
    n_tokens = len(tokenizer(text)["input_ids"])
    assert len(result.rows) == n_tokens > 32
    assert any("overlapping windows of 32 tokens" in note for note in result.notes)
    assert reports[-1][1] == reports[-1][2] > 1  # windows, all reported
    given = [sum(r.weights) for r in result.rows if sum(r.weights) > 0]
    assert given and all(abs(s - 1) < 1e-5 for s in given)


def test_the_command_on_a_long_text(wmtp, loaded, tmp_path):
    _, _, _, recipe = loaded
    text = tmp_path / "long.txt"
    text.write_text("def f(a):\n    return a + 1\n" * 400, encoding="utf-8")  # beyond the tiny model's 4,096 tokens
    out = tmp_path / "rows.json"
    critic = recipe.parent / "runs" / "r" / "critic"
    result = wmtp("inspect-weights", str(text), "--critic", str(critic), "--format", "json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert len(rows) > 4096 and [r["position"] for r in rows] == list(range(len(rows)))
