"""A LoRA adapter in peft's own format: written from the training model's tensors, read back onto its base model.

peft saves an adapter as ``adapter_config.json`` (the ``LoraConfig``, ``base_model_name_or_path`` naming the
base model) and ``adapter_model.safetensors``: the LoRA tensors alone, named as in the training model's state
dict with peft's wrapper prefix and without the adapter's name (``layers.0.self_attn.q_proj.lora_A.default.weight``
is saved as ``base_model.model.layers.0.self_attn.q_proj.lora_A.weight``). ``PeftModel.from_pretrained(base,
folder)`` loads it. The adapter is written from ``(name, tensor)`` pairs, not by ``PeftModel.save_pretrained``,
because the final save of an FSDP2 run has the state only as a stream of gathered tensors.

``wmtp.lora_save`` says where it goes: ``final/adapter/`` beside the merged model (``both``), or ``final/`` itself
in place of the merged model (``adapter``), which :func:`wmtp_cli.model.loading.load_causal_lm` loads as base +
adapter.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FOLDER = "adapter"  # final/adapter/ with wmtp.lora_save: both
PEFT_PREFIX = "base_model.model."  # peft's wrapper: PeftModel.base_model (LoraModel).model (the model itself)
ADAPTER_NAME = "default"  # the one adapter a run trains (peft's default name)


def adapter_key(name: str) -> str | None:
    """peft's saved name of the LoRA tensor ``name`` of the model's state dict; None for any other tensor."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("lora_") and parts[i + 1] == ADAPTER_NAME:
            return PEFT_PREFIX + ".".join(parts[: i + 1] + parts[i + 2 :])
    return None


def collect_adapter(
    tensors: Iterable[tuple[str, torch.Tensor | None]], into: dict[str, torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor | None]]:
    """Pass ``tensors`` through unchanged, keeping each LoRA tensor in ``into`` under its peft name (a None tensor,
    on a process that does not write, is not kept)."""
    for name, tensor in tensors:
        key = adapter_key(name)
        if key is not None and tensor is not None:
            into[key] = tensor
        yield name, tensor


def adapter_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The LoRA tensors of ``tensors`` (a model's state dict items) under their peft names."""
    out: dict[str, torch.Tensor] = {}
    for _ in collect_adapter(tensors, out):
        pass
    return out


def base_model_reference(path: str) -> str:
    """What ``base_model_name_or_path`` records: a local folder as an absolute path (the adapter is read from
    another working directory later), a hub id as it is."""
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def save_adapter(
    folder: Path, peft_config, tensors: dict[str, torch.Tensor], base_model: str, base_class: type
) -> None:
    """``adapter_config.json`` and ``adapter_model.safetensors`` in ``folder``, as ``PeftModel.save_pretrained``
    writes them: the config in inference mode, naming ``base_model`` and (a config without a task type) the base
    model's class, which ``AutoPeftModelForCausalLM`` imports."""
    from safetensors.torch import save_file

    if not tensors:
        raise ValueError("no LoRA tensors in the model's state: nothing to save as an adapter")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config = copy.deepcopy(peft_config)
    config.inference_mode = True
    config.base_model_name_or_path = base_model
    auto_mapping = None
    if config.task_type is None:
        auto_mapping = {"base_model_class": base_class.__name__, "parent_library": base_class.__module__}
    config.save_pretrained(str(folder), auto_mapping_dict=auto_mapping)


def adapter_base(folder: str | Path) -> str | None:
    """The base model of ``folder`` when it holds a LoRA adapter in place of a model (``adapter_config.json`` and no
    ``config.json``); None for a model folder, a hub id or anything else."""
    folder = Path(folder).expanduser()
    if not (folder / ADAPTER_CONFIG).is_file() or (folder / "config.json").is_file():
        return None
    return json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
