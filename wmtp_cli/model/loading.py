"""Loading a model folder (or hub id) and its tokenizer, with errors a user can act on.

Every command loads through here, so a missing folder, a file given for a folder or a folder
without a model says so in one line, naming the setting that pointed there (``model.path``,
``--model``), instead of the hub client's "Repo id must be in the form ...". A folder holding a LoRA
adapter alone (``wmtp.lora_save: adapter``) loads as its base model with the adapter merged in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wmtp_cli.errors import UsageError
from wmtp_cli.model.adapter import ADAPTER_CONFIG, adapter_base

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "auto": "auto"}

# A hub repo id: 'name' or 'owner/name', letters, digits, '-', '_' and '.' (huggingface_hub's rules).
_HUB_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")
_MAKE_ONE = "convert a checkpoint with `wmtp download` or train one with `wmtp pretrain`"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_model_source(path: str, what: str = "model.path") -> None:
    """That ``path`` is a model folder (one with config.json, or a LoRA adapter's adapter_config.json) or could be a
    hub id; a one-line error otherwise."""
    local = Path(path).expanduser()
    if local.is_dir():
        if not ((local / "config.json").is_file() or (local / ADAPTER_CONFIG).is_file()):
            raise UsageError(f"{what} {path} is a folder without config.json, not a model folder: {_MAKE_ONE}")
        return
    if local.exists():
        raise UsageError(f"{what} {path} is a file, not a model folder: {_MAKE_ONE}")
    if path.startswith((".", "/", "~")) or not _HUB_ID.match(path) or path.count("/") > 1:
        raise UsageError(f"{what} {path} does not exist: {_MAKE_ONE}")


def _load_error(path: str, what: str, thing: str, exc: Exception) -> UsageError:
    """The one-line error for a failed ``from_pretrained``; says the folder is missing when it was read as a hub id."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if not Path(path).expanduser().exists():
        return UsageError(
            f"{what} {path} is not a local folder, and loading it from the hub as a repo id failed ({reason}): "
            f"check the path, or {_MAKE_ONE}"
        )
    return UsageError(f"cannot load the {thing} at {what} {path}: {reason}")


def load_causal_lm(config, device: str | None = None, what: str = "model.path"):
    """The causal LM at ``config.path`` (a converted folder or a hub id) in ``config.dtype``, in eval mode; for a
    LoRA adapter's folder, its base model with the adapter merged in."""
    check_model_source(config.path, what)
    return _model_or_adapter(config.path, config.dtype, what).to(device or default_device()).eval()


def _model_or_adapter(path: str, dtype: str, what: str):
    base = _adapter_base(path, what)
    return _from_pretrained(path, dtype, what) if base is None else _base_with_adapter(path, base, dtype, what)


def _from_pretrained(path: str, dtype: str, what: str):
    from transformers import AutoModelForCausalLM

    import wmtp_cli.model  # noqa: F401  (registers the MTP architecture with the Auto classes)

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    except (OSError, ValueError) as exc:
        raise _load_error(path, what, "model", exc) from None


def _base_with_adapter(path: str, base: str, dtype: str, what: str):
    """The base model named by the adapter at ``path``, with the adapter merged in (peft's ``merge_and_unload``)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise UsageError(
            f"{what} {path} is a LoRA adapter: loading it needs the peft package: pip install 'wmtp-cli[lora]'"
        ) from None
    check_model_source(base, _base_what(path, what))
    model = _model_or_adapter(base, dtype, _base_what(path, what))  # the base may be an adapter in turn
    try:
        return PeftModel.from_pretrained(model, path).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise _load_error(path, what, "LoRA adapter", exc) from None


def _adapter_base(path: str, what: str) -> str | None:
    """The base model of the LoRA adapter at ``path``; None when ``path`` holds a model (or is a hub id)."""
    base = adapter_base(path)
    if base == "":
        raise UsageError(f"{what} {path} is a LoRA adapter whose {ADAPTER_CONFIG} names no base model: set its "
                         "base_model_name_or_path")  # fmt: skip
    if base is not None and Path(base).expanduser().resolve() == Path(path).expanduser().resolve():
        raise UsageError(f"{_base_what(path, what)} is the adapter's own folder: name the base model there")
    return base


def _base_what(path: str, what: str) -> str:
    """How an error names an adapter's base model: the file that points there."""
    return f"{Path(path) / ADAPTER_CONFIG}'s base_model_name_or_path (the base model of {what})"


def load_tokenizer(path: str, what: str = "model.path", need_eos: bool = True):
    """The tokenizer saved with the model at ``path``; with ``need_eos`` it must have an EOS token."""
    from transformers import AutoTokenizer

    check_model_source(path, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _load_error(path, what, "tokenizer", exc) from None
    if need_eos and tokenizer.eos_token_id is None:
        raise UsageError(f"the tokenizer of {what} {path} has no EOS token, which ends every completion")
    return tokenizer


def load_config(path: str, what: str = "model.path"):
    """The model's config alone (no weights), e.g. to check a critic against it before loading the model."""
    from transformers import AutoConfig

    import wmtp_cli.model  # noqa: F401  (registers the MTP architecture with the Auto classes)

    check_model_source(path, what)
    base = _adapter_base(path, what)
    if base is not None:
        return load_config(base, _base_what(path, what))
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _load_error(path, what, "config", exc) from None


@dataclass(frozen=True)
class LoadedModel:
    """A model folder's model and tokenizer, and for a multi-token-prediction model the heads to use."""

    model: Any
    tokenizer: Any
    n_future: int | None  # ``model.n_future`` or every head; None for a causal LM without heads


def load_model_and_tokenizer(
    config, device: str | None = None, what: str = "model.path", need_eos: bool = False, need_mtp: bool = False
) -> LoadedModel:
    """The tokenizer (cheap, so a bad folder fails fast), then the model; see :func:`heads_to_use` for ``need_mtp``.

    A training stage loads the tokenizer alone first, tokenizes its data (failing fast on bad data), and then
    the model with :func:`load_causal_lm` and :func:`heads_to_use`: the same three functions.
    """
    tokenizer = load_tokenizer(config.path, what, need_eos=need_eos)
    model = load_causal_lm(config, device=device, what=what)
    return LoadedModel(model, tokenizer, heads_to_use(model, config, need_mtp))


def heads_to_use(model, config, need_mtp: bool = True) -> int | None:
    """``config.n_future`` (or every head) of a multi-token-prediction model; None for another causal LM, which
    ``need_mtp`` refuses."""
    available = getattr(model.config, "n_future_tokens", None)
    if available is None or not hasattr(model, "head_logits"):
        if not need_mtp:
            return None
        raise UsageError(
            f"{config.path} is a {type(model).__name__}, not a multi-token-prediction model "
            "(convert one with `wmtp download`)"
        )
    n_future = getattr(config, "n_future", None) or available
    if n_future > available:
        raise UsageError(f"model.n_future={n_future} but {config.path} has only {available} head(s)")
    return n_future
