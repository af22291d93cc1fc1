"""Loading a model folder named by a recipe's ``model`` section, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import torch

from wmtp_cli.errors import UsageError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "auto": "auto"}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(config, device: str | None = None):
    """The causal LM at ``config.path`` (a converted folder or a hub id) in ``config.dtype``, in eval mode."""
    from transformers import AutoModelForCausalLM

    import wmtp_cli.model  # noqa: F401  (registers the MTP architecture with the Auto classes)

    path = config.path
    if not Path(path).exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
        raise UsageError(f"model.path {path!r} does not exist: convert a checkpoint with `wmtp download` first")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[config.dtype])
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the model at {path!r}: {str(exc).strip().splitlines()[0]}") from None
    return model.to(device or default_device()).eval()
