"""Convert Meta's multi-token-prediction checkpoints to a Hugging Face style folder.

Meta's layout (DESIGN.md section 2): a variant folder with ``params.json`` and
``consolidated*.pth`` (one file per model-parallel rank), and ``tokenizer.model`` at the root.
The output folder holds ``config.json``, ``generation_config.json``, safetensors shards, the
tokenizer files, ``conversion.json`` (where it came from) and the modeling code (``configuration.py``,
``modeling.py``, named in config.json's ``auto_map``). Tensors are read memory-mapped and
written one at a time, so peak memory stays near the largest tensor, not the checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from wmtp_cli.config.provenance import collect_provenance
from wmtp_cli.convert.safetensors_stream import (
    TensorEntry,
    plan_shards,
    release_pages,
    shard_file_names,
    write_index,
    write_safetensors,
)
from wmtp_cli.errors import CheckpointError, UsageError
from wmtp_cli.io import atomic_directory, check_output, check_replaceable
from wmtp_cli.model.configuration import MTPConfig, llama_ffn_hidden_size
from wmtp_cli.model.saving import save_config_with_code

logger = logging.getLogger(__name__)

CONVERSION_RECORD = "conversion.json"  # written into every converted folder; --force replaces only such folders

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30

# Keys some Meta checkpoints carry that the model recomputes (Llama 2's rotary table).
_IGNORED_KEYS = {"rope.freqs"}

# How model-parallel ranks split each tensor (fairscale: column-parallel along rows, row-parallel
# along columns, the embedding along its width); norms are replicated.
_SHARD_DIM = {
    "tok_embeddings": 1,
    "output": 0,
    "wq": 0,
    "wk": 0,
    "wv": 0,
    "w1": 0,
    "w3": 0,
    "wo": 1,
    "w2": 1,
}


@dataclass(frozen=True)
class MetaParams:
    """The fields of Meta's ``params.json`` that define the architecture."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    multiple_of: int
    ffn_dim_multiplier: float | None
    norm_eps: float
    rope_theta: float
    n_future_tokens: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def n_trunk(self) -> int:
        return self.n_layers - self.n_future_tokens

    @property
    def ffn_hidden(self) -> int:
        return llama_ffn_hidden_size(self.dim, self.multiple_of, self.ffn_dim_multiplier)

    def to_config(self) -> MTPConfig:
        return MTPConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.dim,
            intermediate_size=self.ffn_hidden,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_kv_heads,
            n_future_tokens=self.n_future_tokens,
            rms_norm_eps=self.norm_eps,
            rope_theta=self.rope_theta,
        )


def read_params(path: Path, vocab_size_hint: int | None = None) -> MetaParams:
    """Read and check ``params.json``; ``vocab_size_hint`` fills Llama's ``vocab_size: -1``."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: a Meta checkpoint folder needs params.json") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    missing = [key for key in ("dim", "n_layers", "n_heads") if key not in raw]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: is this a Meta Llama/MTP params.json?")
    vocab_size = raw.get("vocab_size", -1)
    if vocab_size is None or vocab_size <= 0:
        if vocab_size_hint is None:
            raise CheckpointError(f"{path} has no vocab_size and the checkpoint gives none")
        vocab_size = vocab_size_hint
    params = MetaParams(
        dim=int(raw["dim"]),
        n_layers=int(raw["n_layers"]),
        n_heads=int(raw["n_heads"]),
        n_kv_heads=int(raw.get("n_kv_heads") or raw["n_heads"]),
        vocab_size=int(vocab_size),
        multiple_of=int(raw.get("multiple_of", 256)),
        ffn_dim_multiplier=raw.get("ffn_dim_multiplier"),
        norm_eps=float(raw.get("norm_eps", 1e-5)),
        rope_theta=float(raw.get("rope_theta", 10000.0)),
        n_future_tokens=int(raw.get("n_future_tokens", 1)),
    )
    if params.n_future_tokens < 1 or params.n_layers < params.n_future_tokens:
        raise CheckpointError(
            f"{path}: n_future_tokens={params.n_future_tokens} must be between 1 and n_layers={params.n_layers}"
        )
    if params.dim % params.n_heads or params.n_heads % params.n_kv_heads:
        raise CheckpointError(f"{path}: dim, n_heads and n_kv_heads do not divide evenly")
    return params


def expected_shapes(params: MetaParams) -> dict[str, tuple[int, ...]]:
    """Every tensor of Meta's state dict for ``params``, with its shape."""
    d, hd, ffn = params.dim, params.head_dim, params.ffn_hidden
    block = {
        "attention.wq.weight": (params.n_heads * hd, d),
        "attention.wk.weight": (params.n_kv_heads * hd, d),
        "attention.wv.weight": (params.n_kv_heads * hd, d),
        "attention.wo.weight": (d, params.n_heads * hd),
        "feed_forward.w1.weight": (ffn, d),
        "feed_forward.w2.weight": (d, ffn),
        "feed_forward.w3.weight": (ffn, d),
        "attention_norm.weight": (d,),
        "ffn_norm.weight": (d,),
    }
    shapes: dict[str, tuple[int, ...]] = {"tok_embeddings.weight": (params.vocab_size, d)}
    for i in range(params.n_trunk + 1):  # the trunk, then head 0 (next token)
        shapes.update({f"layers.{i}.{key}": shape for key, shape in block.items()})
    for j in range(params.n_future_tokens - 1):
        shapes.update({f"extra_heads.{j}.{key}": shape for key, shape in block.items()})
    shapes["norm.weight"] = (d,)
    shapes["output.weight"] = (params.vocab_size, d)
    return shapes


_BLOCK_KEYS = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}


def hf_name(meta_name: str, params: MetaParams) -> str:
    """Meta's key to :class:`~wmtp_cli.model.MTPForCausalLM`'s key."""
    fixed = {
        "tok_embeddings.weight": "model.embed_tokens.weight",
        "norm.weight": "norm.weight",
        "output.weight": "lm_head.weight",
    }
    if meta_name in fixed:
        return fixed[meta_name]
    match = re.fullmatch(r"(layers|extra_heads)\.(\d+)\.(.+)", meta_name)
    if not match or match.group(3) not in _BLOCK_KEYS:
        raise KeyError(meta_name)
    group, index, rest = match.group(1), int(match.group(2)), _BLOCK_KEYS[match.group(3)]
    if group == "layers" and index < params.n_trunk:
        return f"model.layers.{index}.{rest}"
    head = index - params.n_trunk if group == "layers" else index + 1
    return f"heads.{head}.{rest}"


def permute_for_rotate_half(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of ``wq``/``wk`` from Meta's interleaved rotary pairs to rotate-half pairs.

    Meta rotates pairs (0, 1), (2, 3), ... of each head; transformers rotates (i, i + hd/2). Moving
    the even rows of each head first and the odd rows second makes the two forms equal.
    """
    rows, cols = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)  # (rows, cols)


def to_hf_layout(meta_name: str, tensor: torch.Tensor, params: MetaParams) -> torch.Tensor:
    """One of Meta's tensors as :class:`~wmtp_cli.model.MTPForCausalLM` stores it (see :func:`hf_name`)."""
    if meta_name.endswith("attention.wq.weight"):
        return permute_for_rotate_half(tensor, params.n_heads)
    if meta_name.endswith("attention.wk.weight"):
        return permute_for_rotate_half(tensor, params.n_kv_heads)
    return tensor


class MetaStateDict:
    """The tensors of Meta's ``consolidated*.pth`` files, memory-mapped, model-parallel ranks merged."""

    def __init__(self, variant_dir: Path):
        self.files = sorted(variant_dir.glob("consolidated*.pth"))
        if not self.files:
            raise CheckpointError(f"no consolidated*.pth in {variant_dir}: is this a Meta checkpoint variant folder?")
        self.ranks = []
        for file in self.files:
            try:
                self.ranks.append(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
            except Exception as exc:  # torch raises many types for a corrupt or foreign file
                raise CheckpointError(f"cannot read {file} as a PyTorch state dict ({exc})") from None
            if not isinstance(self.ranks[-1], dict):
                raise CheckpointError(f"{file} holds a {type(self.ranks[-1]).__name__}, not a state dict")
        names = [set(rank) for rank in self.ranks]
        if any(n != names[0] for n in names):
            raise CheckpointError(f"the model-parallel files in {variant_dir} hold different tensors")

    def names(self) -> list[str]:
        return [key for key in self.ranks[0] if key not in _IGNORED_KEYS]

    def _shard_dim(self, name: str) -> int | None:
        parts = name.split(".")
        for part in parts:
            if part in _SHARD_DIM:
                return _SHARD_DIM[part]
        return None

    def shape(self, name: str) -> tuple[int, ...]:
        shape = list(self.ranks[0][name].shape)
        dim = self._shard_dim(name)
        if len(self.ranks) > 1 and dim is not None and len(shape) > dim:
            shape[dim] = sum(rank[name].shape[dim] for rank in self.ranks)
        return tuple(shape)

    def dtype(self, name: str) -> torch.dtype:
        return self.ranks[0][name].dtype

    def load(self, name: str) -> torch.Tensor:
        """The full tensor; the caller calls :meth:`release` once it no longer needs the source pages."""
        pieces = [rank[name] for rank in self.ranks]
        dim = self._shard_dim(name)
        if len(pieces) == 1 or dim is None:
            return pieces[0]
        return torch.cat(pieces, dim=dim)

    def release(self, name: str) -> None:
        for rank in self.ranks:
            release_pages(rank[name])


def check_against_params(state: MetaStateDict, params: MetaParams, variant_dir: Path) -> None:
    """Refuse a checkpoint whose tensors disagree with params.json, listing what differs."""
    expected = expected_shapes(params)
    present = {name: state.shape(name) for name in state.names()}
    missing = sorted(set(expected) - set(present))
    unexpected = sorted(set(present) - set(expected))
    wrong = [
        f"{name} is {present[name]}, expected {shape}"
        for name, shape in expected.items()
        if name in present and present[name] != shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(
            f"the checkpoint in {variant_dir} does not match its params.json "
            f"(n_layers={params.n_layers}, n_future_tokens={params.n_future_tokens}, dim={params.dim}): "
            + "; ".join(problems)
        )


def find_tokenizer(variant_dir: Path) -> Path:
    """``tokenizer.model`` beside the variant folder (Meta's layout) or inside it."""
    for candidate in (variant_dir.parent / "tokenizer.model", variant_dir / "tokenizer.model"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"no tokenizer.model in {variant_dir.parent} or {variant_dir}: Meta's layout keeps it at the root"
    )


def convert_meta_checkpoint(
    variant_dir: str | Path,
    out_dir: str | Path,
    dtype: str | None = None,
    force: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    tokenizer_model: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    provenance: dict | None = None,
) -> Path:
    """Convert one variant folder of Meta's layout to a Hugging Face style folder at ``out_dir``.

    Args:
        variant_dir: folder with ``params.json`` and ``consolidated*.pth``.
        out_dir: the folder to create; written to a temporary name and renamed when complete.
        dtype: ``fp32``, ``bf16`` or ``fp16``; ``None`` keeps the checkpoint's own.
        force: replace an existing ``out_dir`` (only once the new one is complete).
        max_shard_bytes: largest safetensors shard.
        tokenizer_model: SentencePiece model; defaults to Meta's ``tokenizer.model`` location.
        progress: called as ``progress(bytes_done, bytes_total)`` after each tensor.
        provenance: extra facts to record in ``conversion.json`` (e.g. the hub repo and revision).

    Returns:
        ``out_dir``. The result loads with ``AutoModelForCausalLM.from_pretrained(out_dir)``.
    """
    from wmtp_cli.convert.tokenizer import convert_sentencepiece_tokenizer

    variant_dir, out_dir = Path(variant_dir), Path(out_dir)
    check_conversion_output(out_dir, force)
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    tokenizer_model = Path(tokenizer_model) if tokenizer_model else find_tokenizer(variant_dir)
    state, params = _open_checkpoint(variant_dir)
    target = {name: DTYPES[dtype] if dtype else state.dtype(name) for name in state.names()}
    entries = [TensorEntry(hf_name(name, params), target[name], state.shape(name)) for name in state.names()]
    dtype_name = str(target["tok_embeddings.weight"]).removeprefix("torch.")
    config = _model_config(params, dtype_name)
    with atomic_directory(out_dir, force=force) as tmp:
        _write_weights(tmp, state, params, entries, max_shard_bytes, progress)
        save_config_with_code(config, tmp)  # with the modeling code: loads without wmtp_cli too
        _generation_config(config).save_pretrained(tmp)
        convert_sentencepiece_tokenizer(tokenizer_model, tmp)
        record = _conversion_record(variant_dir, state, dtype_name, provenance)
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    logger.info("converted %s to %s (%.2f GiB)", variant_dir, out_dir, sum(e.nbytes for e in entries) / 2**30)
    return out_dir


def _open_checkpoint(variant_dir: Path) -> tuple[MetaStateDict, MetaParams]:
    """The variant folder's tensors and its ``params.json``, checked against each other."""
    state = MetaStateDict(variant_dir)
    # Llama's params.json may say vocab_size: -1; the embedding's rows are the vocabulary then.
    vocab_hint = state.shape("tok_embeddings.weight")[0] if "tok_embeddings.weight" in state.names() else None
    params = read_params(variant_dir / "params.json", vocab_hint)
    check_against_params(state, params, variant_dir)
    return state, params


def _model_config(params: MetaParams, dtype_name: str) -> MTPConfig:
    config = params.to_config()
    # transformers 5 calls the field ``dtype``; 4.x called it ``torch_dtype``.
    setattr(config, "dtype" if hasattr(config, "dtype") else "torch_dtype", dtype_name)
    return config


def _write_weights(
    folder: Path,
    state: MetaStateDict,
    params: MetaParams,
    entries: list[TensorEntry],
    max_shard_bytes: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """The safetensors shards and their index, one tensor in memory at a time."""
    meta_name = {hf_name(name, params): name for name in state.names()}
    total = sum(entry.nbytes for entry in entries)
    done = 0

    def produce(entry: TensorEntry) -> torch.Tensor:
        return to_hf_layout(meta_name[entry.name], state.load(meta_name[entry.name]).to(entry.dtype), params)

    def written(entry: TensorEntry) -> None:
        nonlocal done
        # the tensor is on disk now: its source pages can go, so memory stays near one tensor
        state.release(meta_name[entry.name])
        done += entry.nbytes
        if progress is not None:
            progress(done, total)

    shards = plan_shards(entries, max_shard_bytes)
    names = shard_file_names(len(shards))
    for shard, file_name in zip(shards, names, strict=True):
        write_safetensors(folder / file_name, shard, produce, metadata={"format": "pt"}, on_written=written)
    write_index(folder, shards, names)


def _conversion_record(variant_dir: Path, state: MetaStateDict, dtype_name: str, provenance: dict | None) -> dict:
    """What ``conversion.json`` says: where the folder came from and what made it."""
    return {
        "source": str(variant_dir.resolve()),
        "params": json.loads((variant_dir / "params.json").read_text()),
        "dtype": dtype_name,
        "files": [file.name for file in state.files],
        **(provenance or {}),
        "converted_by": collect_provenance(),
    }


def check_conversion_output(out_dir: Path, force: bool, record: str = CONVERSION_RECORD) -> None:
    """That the converted folder can be written at ``out_dir``; ``force`` replaces only an earlier conversion (a
    folder holding ``record``, which ``wmtp export`` names its own)."""
    check_output(out_dir, "--out", kind="folder")
    if out_dir.exists():
        if not force:
            raise UsageError(f"{out_dir} already exists: choose another --out or pass --force to replace it")
        check_replaceable(out_dir, "--out", record)


def _generation_config(config: MTPConfig):
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
