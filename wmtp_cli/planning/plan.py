"""``wmtp plan``: what a recipe's ``train-wmtp`` run will need per GPU, and how long it will take, before any work.

The model's shape comes from its folder's ``config.json``, or, when the folder is not there yet (a 7B
recipe before ``wmtp download``), from Meta's published ``params.json`` of the variant the folder is named
after (or ``--shape``). The model is built on the meta device to count its parameters exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wmtp_cli.config import Recipe
from wmtp_cli.errors import UsageError
from wmtp_cli.planning.memory import Memory, Setup, Shape, memory, token_flops
from wmtp_cli.weightings import WEIGHTINGS

GIB = 1 << 30
H100_BF16_TFLOPS = 989.0  # H100 SXM dense bf16 peak (NVIDIA's datasheet; 1979 is with sparsity)
DEFAULT_MFU = 0.40
DEFAULT_GPU_MEMORY_GIB = 80.0

# Meta's released variants (DESIGN.md section 2): the 7B Llama 2 shape with 1 or 4 heads.
PUBLISHED_VARIANTS = {"7B_200B_1": 1, "7B_200B_4": 4, "7B_1T_1": 1, "7B_1T_4": 4}


@dataclass
class Plan:
    source: str  # where the shape came from
    shape: Shape
    setup: Setup
    memory: Memory
    memory_no_checkpointing: int  # activations without activation checkpointing
    memory_no_head_loop: int  # activations without the head loop
    steps: int
    tokens_per_step: int
    tokens_total: int
    flops_total: float
    tflops: float
    mfu: float
    gpus: int
    gpu_memory_gib: float
    notes: list[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return self.flops_total / (self.gpus * self.tflops * 1e12 * self.mfu) / 3600

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.gpu_memory_gib * GIB

    @property
    def frozen_parameters(self) -> int:
        """Parameters that take no update (the model's and the critic's, less the trainable ones)."""
        return self.shape.parameters + self.shape.critic_parameters - self.setup.trainable

    @property
    def advice(self) -> str | None:
        """What to change when the run will not fit one GPU's memory; None when it fits."""
        if self.fits:
            return None
        return (
            f"{self.memory.total / GIB:,.2f} GiB per GPU will not fit in {self.gpu_memory_gib:g} GiB: turn on "
            "model.gradient_checkpointing and wmtp.memory_efficient_heads, lower wmtp.batch_size (raise "
            "wmtp.grad_accum), or use run.strategy=fsdp2 on more GPUs"
        )


def model_config(recipe: Recipe, variant: str | None = None):
    """The recipe's model config and where it came from (see the module docstring)."""
    from wmtp_cli.model import MTPConfig
    from wmtp_cli.model.loading import load_config

    if recipe.model is None:
        raise UsageError("wmtp plan needs a model: the recipe has no model section (set model.path)")
    path = Path(recipe.model.path)
    if variant is None and (path / "config.json").is_file():
        return load_config(str(path)), f"{path / 'config.json'}"
    name = variant or path.name
    if name not in PUBLISHED_VARIANTS:
        raise UsageError(
            f"wmtp plan needs the model's shape: {path} has no config.json (download or convert it first), or "
            f"pass --shape with one of Meta's variants: {', '.join(PUBLISHED_VARIANTS)}"
        )
    return MTPConfig(n_future_tokens=PUBLISHED_VARIANTS[name]), f"Meta's published params.json of {name}"


def model_shape(config, recipe: Recipe) -> tuple[Shape, object]:
    """The :class:`Shape` of ``config`` (counted on the meta device) and the meta model itself."""
    import torch

    from wmtp_cli.critic import ValueHead, ValueHeadConfig
    from wmtp_cli.model import MTPForCausalLM

    with torch.device("meta"):
        model = MTPForCausalLM(config)
        c = recipe.critic
        critic = ValueHead(ValueHeadConfig(input_size=config.hidden_size, hidden_size=c.hidden_size,
                                           activation=c.activation, surprise=c.surprise,
                                           attention_heads=c.attention_heads))  # fmt: skip
    total = sum(p.numel() for p in model.parameters())
    block = sum(p.numel() for p in model.heads[0].parameters())
    shape = Shape(
        hidden=config.hidden_size, ffn=config.intermediate_size, vocab=config.vocab_size,
        trunk_layers=config.n_trunk_layers, heads=config.n_future_tokens, parameters=total, block_parameters=block,
        root_parameters=total - block * (config.n_trunk_layers + config.n_future_tokens),
        critic_parameters=sum(p.numel() for p in critic.parameters()) if WEIGHTINGS[recipe.wmtp.weighting].uses_critic
        else 0,
    )  # fmt: skip
    return shape, model


def trainable_parameters(model, shape: Shape, recipe: Recipe, active_heads: int, n_future: int) -> int:
    """Parameters the optimizer updates: LoRA adapters, or every weight but the heads that get no loss."""
    from torch import nn

    w = recipe.wmtp
    critic = shape.critic_parameters if not w.freeze_critic and w.lambda_vf > 0 else 0
    if w.lora_r is not None:
        targets = set(w.lora_target_modules)
        adapters = sum(w.lora_r * (m.in_features + m.out_features) for name, m in model.named_modules()
                       if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in targets)  # fmt: skip
        return adapters + critic
    frozen_heads = shape.heads - min(active_heads, n_future)
    return shape.parameters - frozen_heads * shape.block_parameters + critic


def build_plan(
    recipe: Recipe,
    gpus: int = 1,
    gpu_memory_gib: float = DEFAULT_GPU_MEMORY_GIB,
    tflops: float = H100_BF16_TFLOPS,
    mfu: float = DEFAULT_MFU,
    variant: str | None = None,
    device: str = "cuda",
) -> Plan:
    """The plan of ``recipe``'s ``train-wmtp`` run on ``gpus`` processes (see the module docstring)."""
    if gpus < 1 or gpu_memory_gib <= 0 or tflops <= 0 or not 0 < mfu <= 1:
        raise UsageError("--gpus must be at least 1, --gpu-memory and --tflops positive, --mfu in (0, 1]")
    config, source = model_config(recipe, variant)
    shape, model = model_shape(config, recipe)
    w, run = recipe.wmtp, recipe.run
    n_future = recipe.model.n_future or shape.heads
    if n_future > shape.heads:
        raise UsageError(f"model.n_future={n_future} but the model has only {shape.heads} head(s)")
    active = WEIGHTINGS[w.weighting].active_heads(n_future)
    strategy = "fsdp2" if run.strategy == "fsdp2" else ("ddp" if gpus > 1 else "single")
    param_dtype = recipe.model.dtype
    mixed = device == "cuda" and run.mixed_precision in ("auto", "bf16")
    compute_dtype = "bf16" if mixed else param_dtype
    setup = Setup(
        strategy=strategy, processes=gpus, param_dtype=param_dtype, compute_dtype=compute_dtype,
        trainable=trainable_parameters(model, shape, recipe, active, n_future), active_heads=active,
        micro_batch_tokens=w.batch_size * recipe.data.max_length,
        checkpointing=recipe.model.gradient_checkpointing, head_loop=w.memory_efficient_heads,
        lora=w.lora_r is not None,
    )  # fmt: skip
    mem = memory(shape, setup)
    without_ac = memory(shape, _replace(setup, checkpointing=False)).activations
    without_loop = memory(shape, _replace(setup, head_loop=False)).activations
    tokens_per_step = w.batch_size * gpus * w.grad_accum * recipe.data.max_length
    total_tokens = tokens_per_step * w.max_steps
    plan = Plan(
        source=source, shape=shape, setup=setup, memory=mem, memory_no_checkpointing=without_ac,
        memory_no_head_loop=without_loop, steps=w.max_steps, tokens_per_step=tokens_per_step,
        tokens_total=total_tokens, flops_total=total_tokens * token_flops(shape, setup, recipe.data.max_length),
        tflops=tflops, mfu=mfu, gpus=gpus, gpu_memory_gib=gpu_memory_gib,
    )  # fmt: skip
    if strategy == "single" and gpus == 1 and run.strategy == "ddp":
        plan.notes.append("run.strategy=ddp on one GPU is one process")
    if param_dtype in ("bf16", "fp16") and setup.lora is False:
        plan.notes.append(f"full fine-tuning in {param_dtype}: prefer model.dtype=fp32 with bf16 mixed precision")
    return plan


def _replace(setup: Setup, **changes) -> Setup:
    import dataclasses

    return dataclasses.replace(setup, **changes)
