"""Trunk + head 1 of a multi-token-prediction model folder as a plain Llama folder (``wmtp export --to llama``).

Head 1 (the next-token head) is one more Llama block on the trunk's output, followed by the shared norm
and unembedding, so trunk + head 1 is a Llama model of ``L_trunk + 1`` blocks:

    model.embed_tokens.weight           -> model.embed_tokens.weight
    model.layers.{i}.*  (i < L_trunk)   -> model.layers.{i}.*
    heads.0.*                           -> model.layers.{L_trunk}.*
    norm.weight, lm_head.weight         -> model.norm.weight, lm_head.weight
    heads.1.* .. heads.{n-1}.*          -> dropped

Both use rotate-half rotary embeddings and the same RMSNorm (normalise in float32, cast back, scale), and
the block's parameter names are Llama's already, so ``LlamaForCausalLM``'s logits are head 1's and any
Llama runtime (vLLM, TGI, llama.cpp's converter) takes the folder as is. Tensors are read from the
source's safetensors one at a time and written in shards of bounded size: an export holds at most one
shard in memory (1 GiB by default), never the model.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from wmtp_cli.convert.meta_checkpoint import check_conversion_output
from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_directory
from wmtp_cli.model.saving import DEFAULT_SHARD_BYTES, INDEX_FILE, SINGLE_FILE, ShardedSafetensorsWriter

logger = logging.getLogger(__name__)

EXPORT_RECORD = "export.json"  # written into every export; --force replaces only such folders
MTP_MODEL_TYPE = "meta_mtp"
# What transformers' tokenizers read from a folder; copied byte for byte, so the export tokenizes as the source.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
GENERATION_CONFIG = "generation_config.json"
_MAKE_ONE = "give a folder written by `wmtp download`, `wmtp pretrain` or `wmtp train-wmtp` (its final/)"


def export_llama(
    model_dir: str | Path, out_dir: str | Path, force: bool = False, max_shard_bytes: int = DEFAULT_SHARD_BYTES
) -> Path:
    """Write trunk + head 1 of the MTP model folder ``model_dir`` as a ``LlamaForCausalLM`` folder at ``out_dir``.

    Args:
        model_dir: a multi-token-prediction model folder (config.json with ``model_type: meta_mtp``, safetensors).
        out_dir: the folder to create; written under a temporary name and renamed when complete.
        force: replace an existing ``out_dir`` that holds an earlier export (or is empty).
        max_shard_bytes: largest safetensors shard, and so the most tensor bytes held in memory at once.

    Returns:
        ``out_dir``: safetensors weights in the source's dtype, ``config.json`` (``LlamaConfig``,
        ``num_hidden_layers`` = trunk blocks + 1), ``generation_config.json``, the source's tokenizer files and
        ``export.json`` (where it came from). It loads with ``AutoModelForCausalLM.from_pretrained(out_dir)``.
    """
    model_dir, out_dir = Path(model_dir).expanduser(), Path(out_dir).expanduser()
    source = read_mtp_config(model_dir)
    n_trunk = source.n_trunk_layers
    names = _tensor_names(weight_files(model_dir))
    _check_names(model_dir, names, n_trunk)
    tokenizer_files = [model_dir / name for name in TOKENIZER_FILES if (model_dir / name).is_file()]
    if not tokenizer_files:
        raise UsageError(f"MODEL {model_dir} has no tokenizer (tokenizer.json, tokenizer_config.json): {_MAKE_ONE}")
    check_conversion_output(out_dir, force, EXPORT_RECORD)  # --force replaces only an earlier export
    with atomic_directory(out_dir, force=force) as tmp:
        dtype = _write_weights(names, tmp, n_trunk, max_shard_bytes)
        llama_config(source, dtype).save_pretrained(tmp)
        _write_generation_config(model_dir, source, tmp)
        for file in tokenizer_files:
            shutil.copyfile(file, tmp / file.name)
        record = {"source": str(model_dir.resolve()), "to": "llama", "dropped_heads": source.n_future_tokens - 1}
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    logger.info("exported trunk + head 1 of %s to %s", model_dir, out_dir)
    return out_dir


def read_mtp_config(model_dir: Path):
    """``model_dir``'s :class:`~wmtp_cli.model.MTPConfig`; a one-line error for anything but an MTP model folder."""
    from wmtp_cli.model.configuration import MTPConfig

    if not model_dir.exists():
        raise UsageError(f"MODEL {model_dir} does not exist: {_MAKE_ONE}")
    if not model_dir.is_dir():
        raise UsageError(f"MODEL {model_dir} is a file, not a model folder: {_MAKE_ONE}")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"MODEL {model_dir} has no config.json, so it is not a model folder: {_MAKE_ONE}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"MODEL {model_dir}/config.json cannot be read as JSON ({exc}): {_MAKE_ONE}") from None
    if not isinstance(config, dict) or config.get("model_type") != MTP_MODEL_TYPE:
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise UsageError(
            f"MODEL {model_dir} is a {kind or 'model of unknown type'} folder, not a multi-token-prediction model "
            f"(model_type {MTP_MODEL_TYPE}): {_MAKE_ONE}"
        )
    try:
        return MTPConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"MODEL {model_dir}/config.json is not a valid MTP config: {exc}") from None


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of ``model_dir``: ``model.safetensors``, or the shards its index names."""
    if (model_dir / SINGLE_FILE).is_file():
        return [model_dir / SINGLE_FILE]
    if (model_dir / INDEX_FILE).is_file():
        weight_map = json.loads((model_dir / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"]
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [file.name for file in files if not file.is_file()]
        if missing:
            raise UsageError(f"MODEL {model_dir} lacks {', '.join(missing)}, named by its {INDEX_FILE}")
        return files
    raise UsageError(f"MODEL {model_dir} has no {SINGLE_FILE} or {INDEX_FILE}: {_MAKE_ONE}")


def llama_name(name: str, n_trunk: int) -> str | None:
    """The Llama key of the MTP key ``name``; None for the tensors of heads 2..n, which the export drops."""
    match = re.fullmatch(r"heads\.(\d+)\.(.+)", name)
    if match is None:
        return {"norm.weight": "model.norm.weight"}.get(name, name)  # embedding, trunk blocks and lm_head keep theirs
    return f"model.layers.{n_trunk}.{match.group(2)}" if match.group(1) == "0" else None


def llama_config(source, dtype):
    """The ``LlamaConfig`` of trunk + head 1 of the :class:`~wmtp_cli.model.MTPConfig` ``source``."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=source.vocab_size,
        hidden_size=source.hidden_size,
        intermediate_size=source.intermediate_size,
        num_hidden_layers=source.n_trunk_layers + 1,
        num_attention_heads=source.num_attention_heads,
        num_key_value_heads=source.num_key_value_heads,
        head_dim=source.head_dim,
        hidden_act="silu",
        max_position_embeddings=source.max_position_embeddings,
        rms_norm_eps=source.rms_norm_eps,
        rope_theta=source.rope_theta,
        bos_token_id=source.bos_token_id,
        eos_token_id=source.eos_token_id,
        pad_token_id=source.pad_token_id,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        architectures=["LlamaForCausalLM"],
    )
    # transformers 5 keeps it in rope_parameters; 4.x and converters written for it (llama.cpp's) read it here.
    config.rope_theta = source.rope_theta
    # transformers 5 calls the field ``dtype``; 4.x called it ``torch_dtype``.
    setattr(config, "dtype" if hasattr(config, "dtype") else "torch_dtype", str(dtype).removeprefix("torch."))
    return config


_BLOCK_KEYS = tuple(
    f"{part}.weight"
    for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")
)  # fmt: skip


def expected_llama_names(n_trunk: int) -> set[str]:
    """Every tensor name of the exported model: the embedding, ``n_trunk + 1`` blocks, the norm and the unembedding."""
    blocks = {f"model.layers.{i}.{key}" for i in range(n_trunk + 1) for key in _BLOCK_KEYS}
    return blocks | {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}


def _tensor_names(files: list[Path]) -> dict[str, Path]:
    """``{name: file}`` of every tensor in the safetensors ``files`` (read from their headers only)."""
    from safetensors import safe_open

    names = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            names.update(dict.fromkeys(f.keys(), file))
    return names


def _check_names(model_dir: Path, names: dict[str, Path], n_trunk: int) -> None:
    """That the tensors kept are exactly trunk + head 1's; a one-line error naming what differs otherwise."""
    kept = {target for name in names if (target := llama_name(name, n_trunk)) is not None}
    expected = expected_llama_names(n_trunk)
    problems = []
    for label, items in (("missing", sorted(expected - kept)), ("unexpected", sorted(kept - expected))):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label} {', '.join(items[:3])}{more}")
    if problems:
        raise UsageError(f"MODEL {model_dir}'s tensors do not match its config.json: {'; '.join(problems)}")


def _write_weights(names: dict[str, Path], folder: Path, n_trunk: int, max_shard_bytes: int):
    """Stream the tensors of trunk + head 1 into ``folder`` under their Llama names; return their dtype."""
    from safetensors import safe_open

    writer = ShardedSafetensorsWriter(folder, max_shard_bytes)
    dtype = None
    for file in dict.fromkeys(names.values()):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                target = llama_name(name, n_trunk)
                if target is None:
                    continue
                tensor = f.get_tensor(name)  # one tensor read at a time; the writer holds at most one shard
                dtype = dtype or tensor.dtype
                writer.add(target, tensor)
    writer.close()
    return dtype


def _write_generation_config(model_dir: Path, source, folder: Path) -> None:
    """The source's generation_config.json, or one with its BOS/EOS when it has none."""
    if (model_dir / GENERATION_CONFIG).is_file():
        shutil.copyfile(model_dir / GENERATION_CONFIG, folder / GENERATION_CONFIG)
        return
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=source.bos_token_id, eos_token_id=source.eos_token_id).save_pretrained(folder)
