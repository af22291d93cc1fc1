"""``wmtp download``: Meta's layout to a transformers folder, checked against Meta's own forward.

Every test runs the real command line in a subprocess (as a user would) on tiny random checkpoints
in Meta's layout; hub tests talk to a fake hub on localhost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from conftest import assert_usage_error, run_wmtp_subprocess
from fake_hub import FakeHub
from meta_reference import meta_forward, write_meta_checkpoint
from safetensors import safe_open
from sp_fixtures import train_tiny_sentencepiece
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

import wmtp_cli

SHAPES = {
    "n1": dict(dim=32, n_layers=3, n_heads=4, n_kv_heads=4, n_future_tokens=1, ffn_dim_multiplier=None),
    "n2_gqa": dict(dim=32, n_layers=4, n_heads=4, n_kv_heads=2, n_future_tokens=2, ffn_dim_multiplier=None),
    "n4_ffn_mult": dict(dim=48, n_layers=6, n_heads=6, n_kv_heads=6, n_future_tokens=4, ffn_dim_multiplier=1.3),
    "n4_gqa_ffn_mult": dict(dim=32, n_layers=5, n_heads=4, n_kv_heads=1, n_future_tokens=4, ffn_dim_multiplier=0.8),
}


def params_for(shape: dict, vocab_size: int) -> dict:
    return {"multiple_of": 16, "norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": vocab_size, **shape}


@pytest.fixture(scope="module")
def tokenizer_model(tmp_path_factory) -> Path:
    return train_tiny_sentencepiece(tmp_path_factory.mktemp("sp") / "tokenizer.model")


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_converted_model_matches_meta_forward(tmp_path, tokenizer_model, shape_name, wmtp):
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    params = params_for(SHAPES[shape_name], vocab)
    state = write_meta_checkpoint(tmp_path / "meta", f"tiny_{shape_name}", params, tokenizer_model)
    out = tmp_path / "hf"
    result = wmtp("download", str(tmp_path / "meta"), "--variant", f"tiny_{shape_name}", "--out", str(out))
    assert result.returncode == 0, result.stderr

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert model.config.n_future_tokens == params["n_future_tokens"]
    tokens = torch.randint(0, vocab, (2, 13), generator=torch.Generator().manual_seed(1))
    expected = meta_forward(state, params, tokens)  # (B, T, n, V)
    with torch.no_grad():
        got = model(tokens, return_all_heads=True, use_cache=False).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4

    # transformers' pipelines take the folder like any causal LM.
    generator = pipeline("text-generation", model=str(out), dtype=torch.float32)
    sample = generator("def f(x):", max_new_tokens=5, do_sample=False, return_full_text=False)
    assert isinstance(sample[0]["generated_text"], str)

    # The tokenizer came along and reproduces SentencePiece.
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = "def f(x):\n\treturn x  *  2  # naïve\n"
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    assert tokenizer(text, add_special_tokens=False).input_ids == sp.encode(text)
    assert json.loads((out / "conversion.json").read_text())["params"] == params


def test_model_parallel_files_are_merged(tmp_path, tokenizer_model, wmtp):
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    params = params_for(SHAPES["n2_gqa"], vocab)
    state = write_meta_checkpoint(tmp_path / "meta", "mp2", params, tokenizer_model, model_parallel=2)
    out = tmp_path / "hf"
    assert wmtp("download", str(tmp_path / "meta"), "--out", str(out)).returncode == 0
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tokens = torch.randint(0, vocab, (1, 9))
    with torch.no_grad():
        got = model(tokens, return_all_heads=True).logits
    assert (got - meta_forward(state, params, tokens)).abs().max().item() <= 1e-4


def test_bf16_and_sharded_output(tmp_path, tokenizer_model, wmtp):
    from wmtp_cli.convert import convert_meta_checkpoint

    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    params = params_for(SHAPES["n4_ffn_mult"], vocab)
    state = write_meta_checkpoint(tmp_path / "meta", "v", params, tokenizer_model)
    out = convert_meta_checkpoint(tmp_path / "meta" / "v", tmp_path / "hf", dtype="bf16", max_shard_bytes=40_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2
    with safe_open(out / shards[0], framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    assert dtypes == {torch.bfloat16}
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.dtype == torch.bfloat16
    tokens = torch.randint(0, vocab, (1, 9))
    with torch.no_grad():
        got = model.float()(tokens, return_all_heads=True).logits
    bf16_state = {k: v.to(torch.bfloat16).float() for k, v in state.items()}
    assert (got - meta_forward(bf16_state, params, tokens)).abs().max().item() <= 1e-3


def test_download_from_the_hub(tmp_path, tokenizer_model):
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    params = params_for(SHAPES["n2_gqa"], vocab)
    state = write_meta_checkpoint(tmp_path / "repo", "tiny_2", params, tokenizer_model)
    write_meta_checkpoint(tmp_path / "repo", "tiny_other", params, tokenizer_model)
    hub = FakeHub.from_folder("facebook/multi-token-prediction", tmp_path / "repo")
    with hub as endpoint:
        env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf_home"), "HF_TOKEN": "hf_fake"}
        result = run_wmtp_subprocess(
            "download",
            "facebook/multi-token-prediction",
            "--variant",
            "tiny_2",
            "--out",
            str(tmp_path / "out"),
            env=env,
        )
    assert result.returncode == 0, result.stderr
    fetched = {r.split(" ", 1)[1] for r in hub.requests if "/resolve/" in r}
    assert not any("tiny_other" in path for path in fetched)  # only the chosen variant and the tokenizer
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    tokens = torch.randint(0, vocab, (1, 7))
    with torch.no_grad():
        got = model(tokens, return_all_heads=True).logits
    assert (got - meta_forward(state, params, tokens)).abs().max().item() <= 1e-4
    conversion = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert conversion["origin"] == "hub" and conversion["variant"] == "tiny_2"
    assert conversion["converted_by"]["wmtp"] == wmtp_cli.__version__

    # Offline, the same variant converts again from huggingface_hub's cache, with no hub at all.
    offline = run_wmtp_subprocess(
        "download",
        "--variant",
        "tiny_2",
        "--out",
        str(tmp_path / "again"),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")},
    )
    assert offline.returncode == 0, offline.stderr
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        tmp_path / "out" / "model.safetensors"
    ).read_bytes()


# --- bad input: one clear line, exit status 2 -------------------------------------------------


def test_gated_repo_says_how_to_get_access(tmp_path, wmtp):
    with FakeHub("facebook/multi-token-prediction", mode="gated") as endpoint:
        result = wmtp(
            "download", "--out", str(tmp_path / "o"), env={"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "h")}
        )
    assert_usage_error(result, "gated", "accept the licence", "HF_TOKEN")


def test_missing_repo(tmp_path, wmtp):
    with FakeHub("someone/nothing", mode="missing") as endpoint:
        result = wmtp(
            "download",
            "someone/nothing",
            "--out",
            str(tmp_path / "o"),
            env={"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "h")},
        )
    assert_usage_error(result, "someone/nothing", "not found")


def test_unreachable_hub(tmp_path, wmtp):
    result = wmtp(
        "download",
        "--out",
        str(tmp_path / "o"),
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "h")},
    )
    assert_usage_error(result, "hub")
    assert not (tmp_path / "o").exists()


def test_offline_without_a_cached_copy(tmp_path):
    result = run_wmtp_subprocess(
        "download", "--out", str(tmp_path / "o"), env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "h")}
    )
    assert_usage_error(result, "HF_HUB_OFFLINE")


def test_unknown_variant_lists_those_present(tmp_path, tokenizer_model, wmtp):
    params = params_for(SHAPES["n1"], 400)
    write_meta_checkpoint(tmp_path / "meta", "tiny_a", params, tokenizer_model)
    write_meta_checkpoint(tmp_path / "meta", "tiny_b", params, tokenizer_model)
    result = wmtp("download", str(tmp_path / "meta"), "--variant", "7B_1T_4", "--out", str(tmp_path / "o"))
    assert_usage_error(result, "7B_1T_4", "tiny_a, tiny_b")


def test_unknown_variant_on_the_hub(tmp_path, tokenizer_model, wmtp):
    write_meta_checkpoint(tmp_path / "repo", "tiny_a", params_for(SHAPES["n1"], 400), tokenizer_model)
    with FakeHub.from_folder("facebook/multi-token-prediction", tmp_path / "repo") as endpoint:
        result = wmtp(
            "download",
            "--variant",
            "7B_9T_9",
            "--out",
            str(tmp_path / "o"),
            env={"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "h")},
        )
    assert_usage_error(result, "7B_9T_9", "tiny_a")


def test_checkpoint_that_disagrees_with_params(tmp_path, tokenizer_model, wmtp):
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    params = params_for(SHAPES["n2_gqa"], vocab)
    write_meta_checkpoint(tmp_path / "meta", "v", params, tokenizer_model)
    (tmp_path / "meta" / "v" / "params.json").write_text(json.dumps({**params, "n_future_tokens": 3, "dim": 64}))
    result = wmtp("download", str(tmp_path / "meta"), "--out", str(tmp_path / "o"))
    assert_usage_error(result, "does not match its params.json", "missing", "wrong shape")
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o.partial-*"))  # nothing half written is left behind


def test_existing_output_is_refused_unless_forced(tmp_path, tokenizer_model, wmtp):
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    write_meta_checkpoint(tmp_path / "meta", "v", params_for(SHAPES["n1"], vocab), tokenizer_model)
    out = tmp_path / "o"
    assert wmtp("download", str(tmp_path / "meta"), "--out", str(out)).returncode == 0
    (out / "stale.txt").write_text("from before")
    assert_usage_error(wmtp("download", str(tmp_path / "meta"), "--out", str(out)), "already exists", "--force")
    assert (out / "stale.txt").read_text() == "from before"
    result = wmtp("download", str(tmp_path / "meta"), "--out", str(out), "--force")  # an earlier conversion
    assert result.returncode == 0, result.stderr
    assert (out / "config.json").is_file() and not (out / "stale.txt").exists()


@pytest.mark.parametrize("target", ["a file", "a folder of something else", "under a file"])
def test_force_replaces_only_an_earlier_conversion(tmp_path, tokenizer_model, wmtp, target):
    """--force never replaces a file or a folder this command did not write; nothing is created either."""
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    write_meta_checkpoint(tmp_path / "meta", "v", params_for(SHAPES["n1"], vocab), tokenizer_model)
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "project").mkdir()
    (work / "project" / "thesis.tex").write_text("mine")
    out = {"a file": work / "notes.txt", "a folder of something else": work / "project",
           "under a file": work / "notes.txt" / "model"}[target]  # fmt: skip
    needle = {"a file": "is a file", "a folder of something else": "conversion.json", "under a file": "is a file"}
    before = sorted(work.rglob("*"))
    result = wmtp("download", str(tmp_path / "meta"), "--out", str(out), "--force")
    assert_usage_error(result, "--out", needle[target])
    assert sorted(work.rglob("*")) == before
    assert (work / "notes.txt").read_text() == "mine" and (work / "project" / "thesis.tex").read_text() == "mine"


def test_missing_source_folder_and_bad_dtype(tmp_path, wmtp):
    assert_usage_error(wmtp("download", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "does not exist")
    (tmp_path / "meta" / "v").mkdir(parents=True)
    (tmp_path / "meta" / "v" / "params.json").write_text("{}")
    result = wmtp("download", str(tmp_path / "meta"), "--out", str(tmp_path / "o"), "--dtype", "fp8")
    assert_usage_error(result, "fp8")


def test_version_flag(wmtp):
    result = wmtp("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wmtp {wmtp_cli.__version__}"
