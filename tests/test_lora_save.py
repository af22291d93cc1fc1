"""``wmtp.lora_save``: a LoRA run's final/ holds the merged model, peft's adapter, or both, as it says; the adapter
loads with peft onto the base model and gives the merged model's logits, and wmtp's loader takes an adapter alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapter_checks import assert_adapter_matches_merged, logits, tokens_for
from training_fixtures import scored_setup

from wmtp_cli.config import ModelConfig, load_recipe
from wmtp_cli.training import train_wmtp

pytest.importorskip("peft")

LORA = ["wmtp.weighting=uniform", "wmtp.lora_r=4", "wmtp.lr=1e-2", "wmtp.max_steps=2", "wmtp.grad_accum=1"]
MODEL_FILES = {"config.json", "model.safetensors"}
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A tiny model and its scored data (no critic: these runs use uniform weighting)."""
    return scored_setup(tmp_path_factory.mktemp("lora"), with_critic=False)


@pytest.fixture(scope="module")
def finals(setup) -> dict[str, Path]:
    """final/ of the same LoRA run saved each way."""
    runs = {}
    for how in ("both", "adapter", "merged"):
        scored = setup.parent / "runs" / "r" / "scored"  # scored_setup's, read by every run
        recipe = load_recipe(setup, [*LORA, f"wmtp.lora_save={how}", f"run.name={how}", f"data.scored={scored}"])
        runs[how] = train_wmtp(recipe).final_dir
    return runs


def base_dir(setup: Path) -> Path:
    return Path(json.loads(setup.read_text())["model"]["path"])


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


def test_both_keeps_the_merged_model_and_the_adapter_beside_it(setup, finals):
    final = finals["both"]
    assert files(final) >= MODEL_FILES and not ADAPTER_FILES & files(final)
    assert files(final / "adapter") == ADAPTER_FILES
    assert_adapter_matches_merged(final / "adapter", final, base_dir(setup))


def test_merged_writes_no_adapter(finals):
    final = finals["merged"]
    assert files(final) >= MODEL_FILES and not (final / "adapter").exists() and not ADAPTER_FILES & files(final)


def test_adapter_alone_is_peft_format_and_loads_in_wmtp(setup, finals):
    from wmtp_cli.model.loading import load_config, load_model_and_tokenizer

    final = finals["adapter"]
    assert files(final) >= ADAPTER_FILES and not MODEL_FILES & files(final) and not (final / "adapter").exists()
    assert "tokenizer.json" in files(final) and "recipe.yaml" in files(final)
    # Same seed and data as the "both" run: base + this adapter is that run's merged model.
    assert_adapter_matches_merged(final, finals["both"], base_dir(setup))
    # wmtp's own loader (eval, inspect-weights, a later train-wmtp) takes the folder as a model: base + adapter.
    loaded = load_model_and_tokenizer(ModelConfig(path=str(final), dtype="fp32"), device="cpu", need_mtp=True)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(finals["both"], dtype=torch.float32).eval()
    tokens = tokens_for(merged)
    torch.testing.assert_close(logits(loaded.model, tokens), logits(merged, tokens), rtol=1e-5, atol=1e-5)
    assert loaded.n_future == merged.config.n_future_tokens and loaded.tokenizer.eos_token_id is not None
    assert load_config(str(final)).n_future_tokens == merged.config.n_future_tokens


def test_adapter_keys_are_peft_own(setup):
    """The names the saves give LoRA tensors (from the state dict, as FSDP2's gathered stream has them) are those
    ``get_peft_model_state_dict`` gives, with the same tensors."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from wmtp_cli.model.adapter import adapter_tensors, collect_adapter

    model = AutoModelForCausalLM.from_pretrained(base_dir(setup), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "down_proj"], bias="none"))
    expected = get_peft_model_state_dict(peft_model)
    got = adapter_tensors(model.state_dict().items())
    assert got.keys() == expected.keys() and len(got) == 2 * 2 * model.config.num_hidden_layers
    assert all(torch.equal(got[k], expected[k]) for k in got)
    # On a process that does not write, the stream carries None: passed through, nothing kept.
    kept: dict = {}
    names = [name for name, _ in collect_adapter(((n, None) for n in model.state_dict()), kept)]
    assert names == list(model.state_dict()) and kept == {}


def test_adapter_without_its_base_says_which_file_points_where(finals, tmp_path):
    import shutil

    from wmtp_cli.errors import UsageError
    from wmtp_cli.model.loading import load_causal_lm

    moved = tmp_path / "adapter"
    shutil.copytree(finals["adapter"], moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    where = r"adapter_config.json's base_model_name_or_path \(the base model of --model\) .*gone does not exist"
    with pytest.raises(UsageError, match=where):
        load_causal_lm(ModelConfig(path=str(moved), dtype="fp32"), device="cpu", what="--model")
    config["base_model_name_or_path"] = None
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="names no base model"):
        load_causal_lm(ModelConfig(path=str(moved), dtype="fp32"), device="cpu", what="--model")


def test_an_adapter_whose_base_is_an_adapter(finals, tmp_path):
    """A LoRA run fine-tuned from an adapter-alone folder names that folder as its base: loaded in turn."""
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from wmtp_cli.errors import UsageError
    from wmtp_cli.model.loading import load_causal_lm

    second = tmp_path / "second"
    shutil.copytree(finals["adapter"], second)
    config = json.loads((second / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(finals["adapter"])
    (second / "adapter_config.json").write_text(json.dumps(config))
    merged = AutoModelForCausalLM.from_pretrained(finals["both"], dtype=torch.float32)
    expected = PeftModel.from_pretrained(merged, second).merge_and_unload().eval()  # the adapter applied twice
    loaded = load_causal_lm(ModelConfig(path=str(second), dtype="fp32"), device="cpu")
    tokens = tokens_for(loaded)
    torch.testing.assert_close(logits(loaded, tokens), logits(expected, tokens), rtol=1e-5, atol=1e-5)

    config["base_model_name_or_path"] = str(second)
    (second / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="is the adapter's own folder"):
        load_causal_lm(ModelConfig(path=str(second), dtype="fp32"), device="cpu")
