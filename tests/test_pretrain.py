"""``wmtp pretrain``: corpus, byte-level tokenizer and a small MTP model from scratch (tiny settings)."""

from __future__ import annotations

import json

import pytest
from conftest import assert_usage_error

from wmtp_cli.pretraining.corpus import pieces


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from wmtp_cli.config import load_recipe
    from wmtp_cli.pretraining import pretrain

    folder = tmp_path_factory.mktemp("pretrain")
    recipe = {
        "model": {"path": str(folder / "model"), "dtype": "fp32"},
        "data": {"source": "tiny-code", "split": "train", "subset": "n_train=60,n_test=10"},
        "pretrain": {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "trunk_layers": 1,
                     "attention_heads": 4, "stdlib_mb": 0.05, "max_length": 64, "max_steps": 12, "batch_size": 8,
                     "warmup_steps": 2, "lr": 3e-3},
        "run": {"output_dir": str(folder / "runs"), "name": "p", "log_every": 1, "save_every": 6},
    }  # fmt: skip
    path = folder / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    result = pretrain(load_recipe(path))
    return path, result


def test_pretrain_writes_a_model_folder_that_loads_and_learnt(pretrained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, result = pretrained
    assert not result.cached and result.steps == 12
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert model.config.n_future_tokens == 4 and model.config.num_hidden_layers == 5
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    text = "def f(xs):\n\treturn [x + 1 for x in xs]  # ünïcode ✓\n"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids, skip_special_tokens=True) == text
    records = [json.loads(line) for line in (path.parent / "runs" / "p" / "pretrain" / "train" / "metrics.jsonl")
               .read_text().splitlines()]  # fmt: skip
    assert records[-1]["loss"] < records[0]["loss"]
    assert json.loads((result.model_dir / "pretrain.json").read_text())["steps"] == 12


def test_rerun_with_the_same_settings_is_cached_and_other_settings_need_force(pretrained, wmtp):
    path, _ = pretrained
    again = wmtp("pretrain", str(path))
    assert again.returncode == 0 and "already pretrained" in again.stdout
    # data.limit picks the later stages' problems; the corpus reads the whole split, so it is still the same model
    assert "already pretrained" in wmtp("pretrain", str(path), "data.limit=5").stdout
    assert_usage_error(wmtp("pretrain", str(path), "pretrain.max_steps=13"), "--force")


def test_pieces_cut_at_line_ends():
    text = "a = 1\nbb = 2\n" + "c" * 25 + "\n"
    out = list(pieces(text, 12))
    assert "".join(out) == text and all(len(p) <= 12 for p in out)
    assert out[0] == "a = 1\n" and out[2] == "c" * 12


def test_a_prompt_ending_a_line_tokenises_the_same_alone_and_before_its_completion():
    from wmtp_cli.data.tokenization import split_prompt_completion
    from wmtp_cli.pretraining.tokenizer import train_tokenizer

    corpus = ['def f(x):\n    """Return x plus 2."""\n    return x + 2\n'] * 50 + [
        "for i in range(3):\n    print(i)\n"
    ] * 50
    tokenizer = train_tokenizer(corpus, 300)
    prompt, completion = 'def g(y):\n    """Return y plus 3."""\n', "    return y + 3\n"
    prompt_ids, completion_ids, _ = split_prompt_completion(tokenizer, [prompt], [completion])[0]
    assert prompt_ids == tokenizer(prompt)["input_ids"]
    assert tokenizer.decode(prompt_ids + completion_ids, skip_special_tokens=True) == prompt + completion


def test_pretraining_packs_its_corpus_when_asked(pretrained, wmtp):
    """data.packing: every row is a full pretrain.max_length tokens, so each step trains batch_size x 64 tokens."""
    path, _ = pretrained
    model = f"model.path={path.parent / 'packed-model'}"
    result = wmtp("pretrain", str(path), model, "data.packing=true", "run.name=packed", "pretrain.max_steps=3")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (path.parent / "runs" / "packed" / "pretrain" / "train" / "metrics.jsonl")
               .read_text().splitlines()]  # fmt: skip
    assert [r["tokens"] for r in records] == [8 * 64] * 3
