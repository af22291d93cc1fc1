"""How a training run spreads over processes: one process, DDP, or FSDP2.

``run.strategy`` picks it:

- ``auto`` (the default): DDP through accelerate when launched on several processes (``torchrun``,
  ``accelerate launch``), else one process. Every process holds the whole model.
- ``ddp``: the same, but it says so; on one process it is one process.
- ``fsdp2``: :func:`torch.distributed.fsdp.fully_shard` on every block (each trunk layer and each MTP
  head: the model's ``_no_split_modules``) and on the root (embeddings, the shared norm and unembedding,
  the critic), so each process holds 1/world of the parameters, gradients and optimizer state. On a GPU
  with ``run.mixed_precision: bf16`` the blocks compute in bf16 and reduce gradients in fp32, with fp32
  master weights (:class:`~torch.distributed.fsdp.MixedPrecisionPolicy`). One process is a world of one.

FSDP2 is applied here, not through accelerate, because accelerate ignores an FSDP plugin on CPU, and
the sharded path must run in the test suite (2 CPU processes on gloo), not first on someone's 8 GPUs.
FSDP2 keeps every parameter's name, so checkpoints (:mod:`wmtp_cli.training.checkpoints`) are keyed the
same under every strategy and load into any other strategy and number of processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from wmtp_cli.errors import UsageError

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "ddp", "fsdp2")


def resolve_strategy(setting: str, world_size: int) -> str:
    """``run.strategy`` for ``world_size`` processes: ``single``, ``ddp`` or ``fsdp2``."""
    if setting not in STRATEGIES:
        raise UsageError(f"run.strategy must be one of {', '.join(STRATEGIES)} (got {setting!r})")
    if setting == "fsdp2":
        return "fsdp2"
    return "ddp" if world_size > 1 else "single"


@contextmanager
def process_group(strategy: str, device: torch.device) -> Iterator[None]:
    """FSDP2 needs a process group even for a world of one: one is made for the run when no launcher made
    it, and removed after, so that a process can run stages one after another. A launcher's group is kept."""
    import torch.distributed as dist

    if strategy != "fsdp2" or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def block_classes(model: nn.Module) -> list[str]:
    """The names of the classes FSDP2 shards one by one: the model's ``_no_split_modules`` (transformers'
    declaration of its repeated block, ``Block`` for the MTP model)."""
    return list(getattr(model, "_no_split_modules", None) or [])


def blocks_to_shard(module: nn.Module, class_names: Iterable[str]) -> list[nn.Module]:
    """The submodules of ``module`` whose class is named in ``class_names``, in order."""
    names = set(class_names)
    found = [m for m in module.modules() if type(m).__name__ in names]
    if not found:
        raise UsageError(
            f"run.strategy=fsdp2 shards each block of class {', '.join(sorted(names)) or '(none named)'}, and the "
            f"model ({type(module).__name__}) has none: it needs a model whose _no_split_modules names its block "
            "class (a converted MTP model does)"
        )
    return found


def mixed_precision_policy(device: torch.device, mixed_precision: str | None):
    """bf16 compute with fp32 gradient reduction on a GPU when the run asks for bf16; full precision otherwise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if device.type == "cuda" and mixed_precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard(objective: nn.Module, block_classes: Iterable[str], device: torch.device, mixed_precision: str | None):
    """Apply FSDP2 to ``objective`` in place (inside :func:`process_group`): each block its own unit, the rest
    (embeddings, the shared norm and unembedding, the critic) in the root unit."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    blocks = blocks_to_shard(objective, block_classes)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = mixed_precision_policy(device, mixed_precision)
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(objective, mesh=mesh, mp_policy=policy)
    return objective


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> float:
    """Clip the gradients of (possibly sharded) parameters to a global norm of ``max_norm``; the norm before.

    Each process holds a shard of each gradient: the norm of the local shards is a partial result that
    ``full_tensor`` sums across processes, so every process scales by the same global norm.
    """
    from torch.distributed.tensor import DTensor

    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return 0.0
    total = torch.nn.utils.get_total_norm([p.grad for p in parameters], norm_type=2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return float(total)


def local_elements(module: nn.Module) -> tuple[int, int, str, int, int]:
    """(elements this process holds, elements of the whole model, the largest parameter's name, its elements,
    the elements of it this process holds) over ``module``'s parameters."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    largest, largest_local, largest_size = "", 0, -1
    for name, param in module.named_parameters():
        held = param.to_local().numel() if isinstance(param, DTensor) else param.numel()
        total += param.numel()
        local += held
        if param.numel() > largest_size:
            largest, largest_local, largest_size = name, held, param.numel()
    return local, total, largest, largest_size, largest_local


def full_tensors(state: dict[str, torch.Tensor], main: bool) -> Iterator[tuple[str, torch.Tensor | None]]:
    """``state``'s tensors whole, one at a time: ``(name, tensor on the CPU)`` on the main process, ``(name,
    None)`` on the others. Every process must iterate to the end (each sharded tensor is a collective), and
    only one whole tensor is alive at a time, so the main process's peak is one tensor, not the model."""
    from torch.distributed.tensor import DTensor

    for name, value in state.items():
        if isinstance(value, DTensor):
            value = value.full_tensor()
        yield name, (value.detach().to("cpu", copy=True) if main else None)
        del value
