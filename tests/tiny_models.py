"""Tiny random models with a real (tiny) tokenizer, saved as folders, for tests that load models by path."""

from __future__ import annotations

from pathlib import Path

import torch
from sp_fixtures import train_tiny_sentencepiece

from wmtp_cli.convert.tokenizer import build_fast_tokenizer


def tiny_tokenizer(folder: Path):
    model_file = train_tiny_sentencepiece(folder / "sp" / "tokenizer.model")
    return build_fast_tokenizer(model_file)


def make_tiny_reward_model(folder: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """A 2-layer random Llama sequence classifier with the tiny tokenizer, saved at ``folder``."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = tiny_tokenizer(folder.parent / f"{folder.name}-tok")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, num_labels=num_labels,
        pad_token_id=tokenizer.eos_token_id, max_position_embeddings=4096,
    )  # fmt: skip
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_mtp_model(folder: Path, n_future: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A random MTP model (n_future heads) with the tiny tokenizer, saved at ``folder`` in ``dtype``."""
    from wmtp_cli.model import MTPConfig, MTPForCausalLM

    tokenizer = tiny_tokenizer(folder.parent / f"{folder.name}-tok")
    torch.manual_seed(seed)
    config = MTPConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=n_future + 2,
        num_attention_heads=4, n_future_tokens=n_future, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    MTPForCausalLM(config).to(dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
