"""Write safetensors shards one tensor at a time.

``safetensors.torch.save_file`` needs every tensor of a file in memory at once; converting a 25 GiB
checkpoint that way holds a whole shard twice (source and converted copy). The format is simple
(an 8-byte little-endian header length, a JSON header with each tensor's dtype, shape and byte
range, then the raw bytes), so the header is computed from shapes alone and each tensor is
produced, written and dropped in turn. The files are read back by the ``safetensors`` library.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass(frozen=True)
class TensorEntry:
    """What the header needs to know about a tensor before its bytes exist."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        numel = 1
        for size in self.shape:
            numel *= size
        return numel * torch.empty((), dtype=self.dtype).element_size()


def plan_shards(entries: Sequence[TensorEntry], max_shard_bytes: int) -> list[list[TensorEntry]]:
    """Group tensors, in order, into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shards: list[list[TensorEntry]] = []
    size = 0
    for entry in entries:
        if not shards or (size + entry.nbytes > max_shard_bytes and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += entry.nbytes
    return shards


def _header(entries: Sequence[TensorEntry], metadata: dict[str, str] | None) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for entry in entries:
        header[entry.name] = {
            "dtype": SAFETENSORS_DTYPES[entry.dtype],
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(
    path: str | os.PathLike,
    entries: Sequence[TensorEntry],
    produce: Callable[[TensorEntry], torch.Tensor],
    metadata: dict[str, str] | None = None,
    on_written: Callable[[TensorEntry], None] | None = None,
) -> None:
    """Write ``entries`` to ``path``, asking ``produce`` for each tensor only when its turn comes."""
    if sys.byteorder != "little":
        raise RuntimeError("safetensors stores little-endian data; writing from a big-endian host is not supported")
    with open(path, "wb") as f:
        f.write(_header(entries, metadata))
        for entry in entries:
            tensor = produce(entry)
            if tensor.dtype != entry.dtype or tuple(tensor.shape) != entry.shape:
                raise ValueError(
                    f"{entry.name}: produced {tuple(tensor.shape)} {tensor.dtype}, planned {entry.shape} {entry.dtype}"
                )
            tensor = tensor.detach().cpu().contiguous()
            # A uint8 view exposes the raw bytes to the buffer protocol without another copy.
            f.write(memoryview(tensor.view(torch.uint8).numpy()))
            if on_written is not None:
                on_written(entry)
            del tensor


_MADV_DONTNEED = 4


def release_pages(tensor: torch.Tensor) -> None:
    """Drop the resident pages of a memory-mapped tensor once it has been read.

    Pages of a file mapped with ``torch.load(mmap=True)`` stay in the process's resident set after
    they are read, so streaming a 25 GiB checkpoint would grow RSS to 25 GiB. ``madvise`` with
    ``MADV_DONTNEED`` gives them back; the mapping stays valid and would be re-read from the file.
    Only the whole pages inside the tensor are released. Best effort: a no-op off Linux.
    """
    if not sys.platform.startswith("linux") or tensor.device.type != "cpu":
        return
    storage = tensor.untyped_storage()
    start, size = storage.data_ptr(), storage.nbytes()
    page = os.sysconf("SC_PAGE_SIZE")
    first = -(-start // page) * page
    last = (start + size) // page * page
    if last <= first:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), ctypes.c_int(_MADV_DONTNEED))


def shard_file_names(n_shards: int) -> list[str]:
    """transformers' names: ``model.safetensors`` alone, else ``model-00001-of-0000N.safetensors``."""
    if n_shards == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{n_shards:05d}.safetensors" for i in range(1, n_shards + 1)]


def write_index(out_dir: Path, shards: Sequence[Sequence[TensorEntry]], names: Sequence[str]) -> None:
    """``model.safetensors.index.json``: which shard holds each tensor (only when there are several)."""
    if len(shards) < 2:
        return
    weight_map = {entry.name: name for shard, name in zip(shards, names, strict=True) for entry in shard}
    total = sum(entry.nbytes for shard in shards for entry in shard)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
