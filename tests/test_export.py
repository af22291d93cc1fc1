"""``wmtp export --to llama``: trunk + head 1 as a plain ``LlamaForCausalLM`` that computes head 1 exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_usage_error
from safetensors import safe_open
from tiny_models import make_tiny_mtp_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
from without_wmtp import run_python

import wmtp_cli  # noqa: F401  (registers the MTP architecture for the in-package reference)

TEXT = "def f(x):\n    return x * 2  # naïve\n"

# Loads the export (sys.argv[1]) with LlamaForCausalLM where wmtp_cli cannot be imported; saves to sys.argv[2].
LOAD_LLAMA = """
import json
import sys

import torch
from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

folder, out, text = sys.argv[1], sys.argv[2], sys.argv[3]
config = AutoConfig.from_pretrained(folder)
model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
tokens = torch.randint(3, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    logits = model(tokens, use_cache=False).logits
    prompt = tokens[:1, :4]
    generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
ids = torch.tensor(AutoTokenizer.from_pretrained(folder)(text).input_ids)
torch.save({"logits": logits, "generated": generated, "ids": ids, "config": type(config).__name__}, out)
"""


def head_1_reference(model_dir: Path) -> dict[str, torch.Tensor]:
    """What the MTP model (the package's class) computes on the tokens ``LOAD_LLAMA`` uses: head 1's logits."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokens = torch.randint(3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(tokens, use_cache=False).logits  # (B, T, V): head 1
        prompt = tokens[:1, :4]
        generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
    ids = torch.tensor(AutoTokenizer.from_pretrained(model_dir)(TEXT).input_ids)
    return {"logits": logits, "generated": generated, "ids": ids}


@pytest.fixture(scope="module")
def mtp_model(tmp_path_factory) -> Path:
    return make_tiny_mtp_model(tmp_path_factory.mktemp("export") / "model", n_future=3)


def test_llama_export_computes_head_1_without_wmtp_cli(mtp_model, tmp_path, wmtp):
    out = tmp_path / "llama"
    result = wmtp("export", str(mtp_model), "--to", "llama", "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    source = json.loads((mtp_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["num_hidden_layers"] == source["num_hidden_layers"] - source["n_future_tokens"] + 1 == 3
    assert config["dtype"] == "float32" and "auto_map" not in config
    assert not (out / "modeling.py").exists() and (out / "generation_config.json").is_file()
    assert json.loads((out / "export.json").read_text())["dropped_heads"] == 2

    run_python(LOAD_LLAMA, tmp_path, str(out), str(tmp_path / "llama.pt"), TEXT)
    got, expected = torch.load(tmp_path / "llama.pt", weights_only=True), head_1_reference(mtp_model)
    assert got["logits"].shape == expected["logits"].shape
    assert (got["logits"] - expected["logits"]).abs().max().item() <= 1e-5
    assert torch.equal(got["generated"], expected["generated"]) and got["generated"].shape[1] > 4
    assert torch.equal(got["ids"], expected["ids"])  # the tokenizer came along


def test_sharded_source_and_output_stream_the_same_tensors(mtp_model, tmp_path):
    from wmtp_cli.convert.llama_export import export_llama
    from wmtp_cli.model.saving import ShardedSafetensorsWriter

    # the source as several shards with an index, as a 7B model is
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    writer = ShardedSafetensorsWriter(sharded, max_shard_bytes=30_000)
    with safe_open(str(mtp_model / "model.safetensors"), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    for name, tensor in tensors.items():
        writer.add(name, tensor)
    writer.close()
    for item in mtp_model.iterdir():
        if not item.name.startswith("model"):
            (sharded / item.name).write_bytes(item.read_bytes())

    out = export_llama(sharded, tmp_path / "llama", max_shard_bytes=30_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    exported = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    # 2 trunk blocks, then head 1 as block 2; heads 2 and 3 dropped
    renamed = {
        "model.layers.2.mlp.down_proj.weight": "heads.0.mlp.down_proj.weight",
        "model.layers.1.self_attn.q_proj.weight": "model.layers.1.self_attn.q_proj.weight",
        "model.norm.weight": "norm.weight",
    }
    assert all(torch.equal(exported[llama], tensors[mtp]) for llama, mtp in renamed.items())
    assert len(index["weight_map"]) == 3 + 9 * 3  # embedding, norm, unembedding and 3 blocks of 9 tensors


def test_bad_inputs_are_one_line(mtp_model, tmp_path, wmtp):
    out = str(tmp_path / "out")
    assert_usage_error(wmtp("export", str(tmp_path / "missing"), "--out", out), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_usage_error(wmtp("export", str(tmp_path / "empty"), "--out", out), "no config.json")
    assert_usage_error(wmtp("export", str(mtp_model / "config.json"), "--out", out), "is a file")
    assert_usage_error(wmtp("export", str(mtp_model), "--to", "gguf", "--out", out), "--to")
    assert_usage_error(wmtp("export", str(mtp_model)), "--out")
    assert not Path(out).exists()  # a refused export writes nothing

    assert wmtp("export", str(mtp_model), "--out", out).returncode == 0
    assert_usage_error(wmtp("export", out, "--out", str(tmp_path / "again")), "not a multi-token-prediction model")
    assert_usage_error(wmtp("export", str(mtp_model), "--out", out), "already exists", "--force")
    assert wmtp("export", str(mtp_model), "--out", out, "--force").returncode == 0  # replaces an earlier export
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert_usage_error(wmtp("export", str(mtp_model), "--out", str(theirs), "--force"), "export.json")
    assert (theirs / "notes.txt").read_text() == "mine"
