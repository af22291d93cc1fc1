"""A model folder written one tensor at a time: safetensors shards of bounded size, with their index.

Used where the whole state dict must never sit in one process's memory (the final model of an FSDP2
run, gathered tensor by tensor): peak memory is one shard (``max_shard_bytes``, 1 GiB by default, about
one fp32 layer of a 7B model), not the model. The folder is the one ``save_pretrained`` writes:
``config.json``, ``generation_config.json``, ``model.safetensors`` (or ``model-0000i-of-0000n.safetensors``
and ``model.safetensors.index.json`` when it takes several shards), so ``from_pretrained`` loads it, plus
the modeling code (:func:`save_config_with_code`), so it loads without ``wmtp_cli`` too.

LoRA adapters are merged on the way (:func:`merge_lora`): W + scale * B @ A, the same as peft's
``merge_and_unload``.
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 1 << 30


class ShardedSafetensorsWriter:
    """Collects tensors and writes a shard whenever the next tensor would take it past ``max_shard_bytes``."""

    def __init__(self, folder: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.folder = Path(folder)
        self.max_shard_bytes = max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self._flush()
        self._pending[name] = tensor.contiguous()
        self._pending_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        save_file(self._pending, str(self.folder / f".shard-{len(self._shards)}"), metadata={"format": "pt"})
        self._shards.append(list(self._pending))
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> None:
        """Write the last shard and name the shards as ``save_pretrained`` would."""
        if self._pending or not self._shards:
            self._flush()
        n = len(self._shards)
        if n == 1:
            (self.folder / ".shard-0").rename(self.folder / SINGLE_FILE)
            return
        weight_map = {}
        for i, names in enumerate(self._shards):
            file = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (self.folder / f".shard-{i}").rename(self.folder / file)
            weight_map.update(dict.fromkeys(names, file))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def lora_scalings(model: torch.nn.Module) -> dict[str, float]:
    """``{module name: lora_alpha / r}`` of every LoRA-wrapped linear layer of ``model`` (peft, adapter "default")."""
    out = {}
    for name, module in model.named_modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and "default" in scaling and hasattr(module, "base_layer"):
            out[name] = float(scaling["default"])
    return out


def merge_lora(
    tensors: Iterable[tuple[str, torch.Tensor | None]], scalings: dict[str, float]
) -> Iterator[tuple[str, torch.Tensor | None]]:
    """``(name, tensor)`` pairs with each LoRA layer's ``base_layer.weight``, ``lora_A`` and ``lora_B`` merged
    into one plain ``weight`` (a None tensor, on a process that does not write, stays None)."""
    held: dict[str, dict[str, torch.Tensor | None]] = {}
    for name, tensor in tensors:
        module, _, leaf = _lora_part(name)
        if module is None or module not in scalings:
            yield name, tensor
            continue
        parts = held.setdefault(module, {})
        parts[leaf] = tensor
        if len(parts) == 3:
            del held[module]
            base, a, b = parts["base"], parts["A"], parts["B"]
            merged = None if base is None else base + scalings[module] * (b.float() @ a.float()).to(base.dtype)
            yield f"{module}.weight", merged
    if held:
        raise ValueError(f"incomplete LoRA layers in the state dict: {sorted(held)}")


def _lora_part(name: str) -> tuple[str | None, str, str]:
    for suffix, leaf in ((".base_layer.weight", "base"), (".lora_A.default.weight", "A"),
                         (".lora_B.default.weight", "B")):  # fmt: skip
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix, leaf
    return None, "", ""


def write_config(model: torch.nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """``config.json`` (with the modeling code) and ``generation_config.json`` of ``model``, as ``save_pretrained``
    writes them."""
    config = model.config
    config.dtype = dtype
    save_config_with_code(config, folder, model_class(model))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)


def model_class(model: torch.nn.Module) -> type:
    """The class ``model`` was built as: FSDP2's ``fully_shard`` swaps it for a subclass named ``FSDP<name>``."""
    return next(cls for cls in type(model).__mro__ if not cls.__name__.startswith("FSDP"))


def save_config_with_code(config, folder: Path, cls: type | None = None) -> None:
    """``config.json`` naming ``cls`` (default :class:`~wmtp_cli.model.MTPForCausalLM`) as the architecture, and,
    for a class registered for an Auto class, its source files beside it and ``auto_map`` naming them.

    What ``save_pretrained`` writes for such a model, without building one (the converter and the FSDP2 final save
    have only tensors): ``from_pretrained(folder, trust_remote_code=True)`` then works without ``wmtp_cli``.
    """
    from transformers.dynamic_module_utils import get_relative_import_files

    if cls is None:
        from wmtp_cli.model import MTPForCausalLM as cls
    config.architectures = [cls.__name__]
    auto_class = getattr(cls, "_auto_class", None)
    if auto_class is not None:
        source = Path(inspect.getfile(cls))
        for file in (source, *map(Path, get_relative_import_files(str(source)))):  # modeling.py, configuration.py
            shutil.copyfile(file, Path(folder) / file.name)
        config.auto_map = {**(getattr(config, "auto_map", None) or {}), auto_class: f"{source.stem}.{cls.__name__}"}
    config.save_pretrained(folder)  # a config class registered for AutoConfig adds itself to auto_map
