"""Checks on a LoRA run's saved adapter, shared by the one-process tests (test_lora_save.py) and FSDP2's."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens, return_all_heads=True, use_cache=False).logits  # (B, T, n, V)


def tokens_for(model) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))


def assert_adapter_matches_merged(adapter_dir: Path, merged_dir: Path, base_dir: Path) -> None:
    """peft loads the adapter at ``adapter_dir`` onto the base model at ``base_dir``, and base + adapter gives the
    merged model's logits (fp32); the adapter names the base model, and training moved the logits at all."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir.resolve()) and config["inference_mode"] is True
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    tokens = tokens_for(base)
    before = logits(base, tokens)
    adapted = PeftModel.from_pretrained(base, adapter_dir).eval()
    expected = logits(merged, tokens)
    assert (before - expected).abs().max() > 1e-3  # training moved the model: a missing adapter would show
    torch.testing.assert_close(logits(adapted, tokens), expected, rtol=1e-5, atol=1e-5)
