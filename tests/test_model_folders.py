"""Model folders carry their modeling code: they load where ``wmtp_cli`` is not installed, and match the package.

Each folder the toolkit writes (a ``train-wmtp`` ``final/``, a ``download`` conversion of Meta's layout, the
FSDP2 final save's tensor-by-tensor folder, a ``pretrain`` model) is loaded twice, each in a fresh interpreter:
with ``import wmtp_cli`` and no ``trust_remote_code`` (the package's classes, no prompt), and with
``trust_remote_code=True`` where importing ``wmtp_cli`` raises (the code copied into the folder). Every head's
logits, greedy ``generate()`` and the value head (through the README's torch-only loader) must be identical.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from conftest import REPO_ROOT
from meta_reference import write_meta_checkpoint
from sp_fixtures import train_tiny_sentencepiece
from tiny_models import make_tiny_mtp_model
from training_fixtures import scored_setup
from without_wmtp import run_python

AUTO_MAP = {"AutoConfig": "configuration.MTPConfig", "AutoModelForCausalLM": "modeling.MTPForCausalLM"}

# Loads each folder (sys.argv[1]) and saves what it computes to sys.argv[2]; sys.argv[3] is "remote" (no
# wmtp_cli: trust_remote_code, and the README's value-head loader in sys.argv[4]) or "package".
LOAD = """
import json
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

folders, out, remote = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "remote"
if remote:
    exec(sys.argv[4])  # defines load_value_head
else:
    import wmtp_cli  # noqa: F401  (registers the package's classes)
    from wmtp_cli.critic import ValueHead

    load_value_head = ValueHead.load
trust = {"trust_remote_code": True} if remote else {}
results = {}
for folder in folders:
    config = AutoConfig.from_pretrained(folder, **trust)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **trust).eval()
    tokens = torch.randint(3, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(tokens, return_all_heads=True, use_cache=False)
        prompt = tokens[:1, :4]
        generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
    result = {
        "logits": output.logits,
        "generated": generated,
        "classes": [f"{type(x).__module__}.{type(x).__name__}" for x in (config, model)],
    }
    if os.path.exists(os.path.join(folder, "value_head.json")):
        with torch.no_grad():
            result["values"] = load_value_head(folder)(output.trunk_hidden_states)
    results[folder] = result
results["wmtp_cli modules"] = sorted(name for name in sys.modules if name.partition(".")[0] == "wmtp_cli")
torch.save(results, out)
"""


def readme_value_head_loader() -> str:
    """The README's torch-only value-head loader: the Python block that defines ``load_value_head``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    (code,) = [block for block in blocks if "def load_value_head" in block]
    return code


def final_folder(folder: Path) -> Path:
    """``final/`` of a real 2-step critic-weighted ``train-wmtp`` run (value head included)."""
    from wmtp_cli.config import load_recipe
    from wmtp_cli.training import train_wmtp

    recipe = load_recipe(scored_setup(folder), ["wmtp.max_steps=2", "run.save_every=100"])
    return train_wmtp(recipe).final_dir


def converted_folder(folder: Path) -> Path:
    """A tiny Meta-layout checkpoint (2 heads, grouped-query attention) converted as ``wmtp download`` does."""
    from wmtp_cli.convert import convert_meta_checkpoint

    tokenizer_model = train_tiny_sentencepiece(folder / "sp" / "tokenizer.model")
    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).vocab_size()
    params = {"dim": 32, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "n_future_tokens": 2, "multiple_of": 16,
              "ffn_dim_multiplier": None, "norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": vocab}  # fmt: skip
    write_meta_checkpoint(folder / "meta", "tiny", params, tokenizer_model)
    return convert_meta_checkpoint(folder / "meta" / "tiny", folder / "converted")


def fsdp2_style_folder(folder: Path) -> Path:
    """The folder ``_save_final_sharded`` writes: tensors one at a time in several shards, then ``write_config``,
    for a model whose class ``fully_shard`` has swapped for ``FSDPMTPForCausalLM`` (as torch does)."""
    from torch.distributed.fsdp import FSDPModule
    from transformers import AutoModelForCausalLM

    from wmtp_cli.model.saving import ShardedSafetensorsWriter, write_config

    model = AutoModelForCausalLM.from_pretrained(make_tiny_mtp_model(folder / "base", n_future=3, seed=1))
    model.__class__ = type(f"FSDP{type(model).__name__}", (FSDPModule, type(model)), {})
    out = folder / "fsdp2-final"
    out.mkdir()
    writer = ShardedSafetensorsWriter(out, max_shard_bytes=20_000)
    for name, tensor in model.state_dict().items():
        writer.add(name, tensor)
    writer.close()
    write_config(model, out, torch.float32)
    assert (out / "model.safetensors.index.json").is_file()  # several shards: the index path is exercised
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """``(folders, results of the package, results without wmtp_cli)``, each loaded in a fresh interpreter."""
    root = tmp_path_factory.mktemp("folders")
    folders = {
        "final": final_folder(root / "train"),
        "converted": converted_folder(root / "convert"),
        "fsdp2": fsdp2_style_folder(root / "fsdp2"),
    }
    names = json.dumps([str(path) for path in folders.values()])
    results = {}
    for mode in ("package", "remote"):
        out = root / f"{mode}.pt"
        run_python(LOAD, root, names, str(out), mode, readme_value_head_loader(), hide_wmtp=mode == "remote")
        results[mode] = torch.load(out, weights_only=True)
    return folders, results["package"], results["remote"]


@pytest.mark.parametrize("kind", ["final", "converted", "fsdp2"])
def test_folder_carries_its_code_and_auto_map(loaded, kind):
    folder = loaded[0][kind]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    assert config["architectures"] == ["MTPForCausalLM"]  # not FSDPMTPForCausalLM
    for module in ("configuration", "modeling"):
        package_file = REPO_ROOT / "wmtp_cli" / "model" / f"{module}.py"
        assert (folder / f"{module}.py").read_text() == package_file.read_text()


@pytest.mark.parametrize("kind", ["final", "converted", "fsdp2"])
def test_without_wmtp_cli_the_folder_computes_what_the_package_does(loaded, kind):
    folders, package, remote = loaded
    expected, got = package[str(folders[kind])], remote[str(folders[kind])]
    n_future = json.loads((folders[kind] / "config.json").read_text())["n_future_tokens"]
    assert got["logits"].shape[2] == n_future > 1 and got["logits"].dtype == torch.float32
    torch.testing.assert_close(got["logits"], expected["logits"], rtol=0, atol=0)
    assert torch.equal(got["generated"], expected["generated"]) and got["generated"].shape[1] > 4
    assert expected["classes"] == ["wmtp_cli.model.configuration.MTPConfig", "wmtp_cli.model.modeling.MTPForCausalLM"]
    assert all(name.startswith("transformers_modules.") for name in got["classes"]), got["classes"]


def test_value_head_loads_with_the_readme_code(loaded):
    folders, package, remote = loaded
    expected, got = package[str(folders["final"])]["values"], remote[str(folders["final"])]["values"]
    assert got.shape == expected.shape == (2, 12) and expected.abs().max() > 0  # a trained head, not the zero init
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_no_wmtp_cli_module_was_imported_without_it(loaded):
    _, package, remote = loaded
    assert remote["wmtp_cli modules"] == []
    assert "wmtp_cli.model.modeling" in package["wmtp_cli modules"]


def test_modeling_labels_agree_with_the_losses():
    """modeling.py repeats the ignored label's value (it imports nothing from wmtp_cli): the two must agree."""
    from wmtp_cli.losses.mtp import IGNORE_INDEX
    from wmtp_cli.model import modeling

    assert modeling.IGNORE_INDEX == IGNORE_INDEX
