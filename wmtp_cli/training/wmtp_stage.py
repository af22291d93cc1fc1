"""``wmtp train-wmtp``: stage 2, critic-weighted MTP fine-tuning and its baselines, on accelerate.

L_total = L_WMTP + lambda * L_VF (DESIGN.md section 3). ``wmtp.weighting`` picks the per-head
weights: ``critic`` (softmax of the critic's delta / tau), ``uniform`` (plain MTP), ``ntp`` (head 1
only) or ``dense_reward`` (delta taken from the dense rewards of ``wmtp score``, no critic); all four
run through the same :class:`~wmtp_cli.training.objective.WMTPObjective`.

The run folder (:func:`wmtp_cli.runs.wmtp_folder`) holds the resolved recipe and versions,
``metrics.jsonl`` (and ``trackers/`` for ``run.report_to: tensorboard``), ``checkpoints/step-<N>/`` every
``run.save_every`` steps (the last ``run.keep_last`` kept) and, at the end, ``final/``: a model folder
that loads with ``AutoModelForCausalLM``, with the tokenizer and, for ``weighting=critic``, the value
head beside it; a LoRA run's ``final/`` holds the merged weights, peft's adapter, or both (the adapter in
``final/adapter/``), as ``wmtp.lora_save`` says. With ``run.push_to_hub`` the main process then pushes
``final/`` to the hub with a model card (:func:`wmtp_cli.hub.push_model`).

The same function runs in one process (CPU or one GPU) and on several (``torchrun``, ``accelerate
launch``): DDP, or FSDP2 with ``run.strategy: fsdp2`` (:mod:`wmtp_cli.training.parallel`). ``resume=True``
continues from the latest complete checkpoint exactly: weights, optimizer, schedule, RNG and data position
(a function of the step), in as many processes as this launch has, whatever number wrote it.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wmtp_cli.config import Recipe, save_resolved_recipe
from wmtp_cli.errors import UsageError
from wmtp_cli.hub import check_can_push, push_after_training
from wmtp_cli.io import atomic_directory, check_output
from wmtp_cli.losses.diagnostics import SUM_NAMES, diagnostics_from_sums
from wmtp_cli.model.adapter import (
    ADAPTER_FOLDER,
    ADAPTER_NAME,
    adapter_tensors,
    base_model_reference,
    collect_adapter,
    save_adapter,
)
from wmtp_cli.progress import Progress
from wmtp_cli.runs import RUN_FOLDER, critic_source, wmtp_folder
from wmtp_cli.training import checkpoints, parallel
from wmtp_cli.training.data import rows
from wmtp_cli.training.objective import ObjectiveSettings, WMTPObjective, loss_counts, metric_names
from wmtp_cli.training.runtime import (
    make_accelerator,
    require_finite,
    to_device,
)
from wmtp_cli.training.setup import (
    add_lora,
    enable_activation_checkpointing,
    freeze_unused_heads,
    load_model,
    load_value_head,
    param_groups,
)
from wmtp_cli.training.stage import TrainingStage
from wmtp_cli.weightings import WEIGHTINGS

logger = logging.getLogger(__name__)

FINAL = "final"


@dataclass
class WMTPResult:
    run_dir: Path
    final_dir: Path
    steps: int
    resumed_from: int | None
    last: dict[str, float] = field(default_factory=dict)  # the last step's logged metrics
    pushed: str | None = None  # the hub repo's URL, when run.push_to_hub pushed final/ there


def objective_settings(recipe: Recipe, n_future: int) -> ObjectiveSettings:
    w, c = recipe.wmtp, recipe.critic
    return ObjectiveSettings(
        weighting=w.weighting, n_future=n_future, temperature=w.temperature, abs_delta=w.abs_delta,
        zscore_delta=w.zscore_delta, uniform_mix=w.uniform_mix, lambda_vf=w.lambda_vf,
        train_critic=not w.freeze_critic, min_reward=w.min_reward, return_target=c.return_target,
        gamma=c.gamma, gae_lambda=c.gae_lambda, memory_efficient=w.memory_efficient_heads,
    )  # fmt: skip


def fingerprint(recipe: Recipe, model) -> dict:
    """What a checkpoint must share with the run that resumes it: the model's shape and what is trained."""
    c = model.config
    shape = [getattr(c, key, None) for key in ("hidden_size", "n_trunk_layers", "n_future_tokens", "vocab_size")]
    return {"model shape (hidden, trunk layers, heads, vocabulary)": shape, "wmtp.weighting": recipe.wmtp.weighting,
            "wmtp.lora_r": recipe.wmtp.lora_r}  # fmt: skip


def _check_run_folder(run_dir: Path, resume: bool, force: bool) -> None:
    if resume or not run_dir.exists():
        return
    if not (checkpoints.checkpoint_dirs(run_dir) or (run_dir / FINAL).exists()):
        return
    if not force:
        raise UsageError(
            f"{run_dir} holds an earlier run: pass --resume to continue it, --force to start over, "
            "or set run.name to write elsewhere"
        )
    shutil.rmtree(run_dir)


def finite_checks(named: dict[str, float], recipe: Recipe, updated: bool) -> dict[str, tuple[float, str]]:
    """What :func:`require_finite` checks after a micro-batch's forward, in causal order, with each one's causes.

    ``updated``: whether an optimiser step has run in this process; before the first, nothing has diverged
    yet, so a non-finite value comes from what was loaded.
    """
    w, c = recipe.wmtp, recipe.critic
    fp16 = "fp16" in (recipe.model.dtype, recipe.run.mixed_precision)
    if updated:
        critic_causes = f"the critic diverged (critic.lr = {c.lr:g}, wmtp.lambda_vf = {w.lambda_vf:g})"
        lm_causes = f"the model diverged (wmtp.lr = {w.lr:g} is too high: lower it, or raise wmtp.warmup_steps)"
    else:
        critic_causes = "the value head holds non-finite weights (wmtp.critic_path)"
        lm_causes = "the model holds non-finite weights (model.path)"
    if fp16:
        lm_causes += ", or fp16 overflow (prefer bf16)"
    return {
        "the critic's values": (_nan_if_any(named["nonfinite_values"]), critic_causes),
        "the weights": (
            _nan_if_any(named["nonfinite_weights"]),
            f"wmtp.temperature = {w.temperature:g} is too small for deltas this large (raise it, or set "
            "wmtp.zscore_delta), or non-finite dense rewards (weighting=dense_reward)",
        ),
        "the LM loss": (named["lm_sum"], lm_causes),
        "the critic loss": (named["vf_sum"], f"{critic_causes}, or non-finite rewards in the scored data"),
    }


def _nan_if_any(count: float) -> float:
    """A count of non-finite entries as a value :func:`require_finite` checks: NaN when there are any."""
    return math.nan if count else 0.0


def _record(totals: torch.Tensor, names: list[str], n_future: int, lambda_vf: float) -> dict[str, float]:
    """Per-step metrics from the summed metric vector of every micro-batch and process."""
    t = dict(zip(names, totals.tolist(), strict=True))
    lm_count = max(t["lm_count"], 1.0)
    lm = t["lm_sum"] / lm_count
    vf = t["vf_sum"] / t["vf_count"] if t["vf_count"] else 0.0
    out = {"loss": lm + lambda_vf * vf, "lm_loss": lm, "vf_loss": vf}
    for k in range(1, n_future + 1):
        count = t[f"ce_count_{k}"]
        if count:
            out[f"ce_head_{k}"] = t[f"ce_sum_{k}"] / count
        out[f"weight_head_{k}"] = t[f"weight_sum_{k}"] / lm_count
    out["weight_entropy"] = t["entropy_sum"] / lm_count
    diagnostics = diagnostics_from_sums([t[f"diag_{name}"] for name in SUM_NAMES])
    out.update({f"weight_{name}": value for name, value in diagnostics.items() if value is not None})
    out["tokens"] = t["tokens"]
    return out


def train_wmtp(
    recipe: Recipe,
    resume: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    run_dir: Path | None = None,
) -> WMTPResult:
    """Run stage 2 as the recipe says; see the module docstring. ``run_dir`` replaces the default folder."""
    run_dir = run_dir or wmtp_folder(recipe)
    check_output(run_dir, RUN_FOLDER, kind="folder")
    repo_id = recipe.run.push_to_hub
    if repo_id:
        check_can_push(repo_id)  # a token, the hub not switched off, a valid repo id: before any work
    accelerator = make_accelerator(recipe.run.mixed_precision, recipe.wmtp.grad_accum, recipe.run.report_to, run_dir)
    strategy = parallel.resolve_strategy(recipe.run.strategy, accelerator.num_processes)
    with parallel.process_group(strategy, accelerator.device):
        result = _train(recipe, accelerator, strategy, run_dir, resume, force, progress)
    if repo_id and accelerator.is_main_process:
        result.pushed = push_after_training(result.final_dir, repo_id, recipe.run.push_private)
    return result


def _train(recipe: Recipe, accelerator, strategy: str, run_dir: Path, resume: bool, force: bool,
           progress: Progress | None) -> WMTPResult:  # fmt: skip
    stage = WMTPStage(recipe, accelerator, strategy, run_dir)
    stage.setup(resume, force)
    start = stage.restore(resume)
    record = stage.train(start, recipe.wmtp.max_steps, progress)
    final_dir = stage.save_final()
    return WMTPResult(run_dir, final_dir, recipe.wmtp.max_steps, stage.resumed_from, record)


class WMTPStage(TrainingStage):
    """One train-wmtp run, as a recipe reads: :meth:`setup` (the shared opening with this stage's folder policy,
    then model and optimizer), :meth:`restore` (a checkpoint), :meth:`train` (the shared loop of :meth:`step`,
    with checkpoints), :meth:`save_final`."""

    def __init__(self, recipe: Recipe, accelerator, strategy: str, run_dir: Path):
        super().__init__(recipe, accelerator, run_dir)
        self.strategy = strategy
        self.resumed_from: int | None = None
        self.what_is_left = "No checkpoint was written yet."

    def setup(self, resume: bool, force: bool) -> None:
        w = self.recipe.wmtp
        self.open(WEIGHTINGS[w.weighting].uses_delta or w.min_reward is not None, resume, force)
        self.batches = self.step_batches(len(self.examples), w.batch_size, w.grad_accum)
        if w.weighting == "dense_reward" and not any(len(d) for d in self.examples["dense_rewards"]):
            raise UsageError(
                "wmtp.weighting=dense_reward needs dense rewards, and the scored data has none: score with "
                "reward.dense=prefix or reward.dense=attention"
            )
        self._setup_model()
        self._setup_optimizer()

    def prepare_folder(self, resume: bool, force: bool) -> None:
        _check_run_folder(self.run_dir, resume, force)
        if resume:
            checkpoints.report_incomplete(self.run_dir)
        checkpoints.remove_partial(self.run_dir)

    def _setup_model(self) -> None:
        from accelerate.utils import DistributedType

        recipe, w, accelerator = self.recipe, self.recipe.wmtp, self.accelerator
        model, self.n_future = load_model(recipe, accelerator.device)
        self.settings = settings = objective_settings(recipe, self.n_future)
        value_head = load_value_head(critic_source(recipe), model) if settings.uses_critic else None
        if recipe.model.gradient_checkpointing:
            enable_activation_checkpointing(model)
        self.peft_model = None
        if w.lora_r is not None:
            if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
                raise UsageError("LoRA runs in one process, with DDP or with run.strategy=fsdp2; not under "
                                 "accelerate's FSDP or DeepSpeed")  # fmt: skip
            self.peft_model = add_lora(model, recipe)
        freeze_unused_heads(model, settings.n_active)
        if self.peft_model is None and model.dtype in (torch.bfloat16, torch.float16):
            logger.warning(
                "training every weight in %s: AdamW updates below its precision are lost (lr %g); for full "
                "fine-tuning prefer model.dtype=fp32 with run.mixed_precision=bf16",
                str(model.dtype).removeprefix("torch."), w.lr,
            )  # fmt: skip
        model.train()
        if value_head is not None:
            value_head.to(accelerator.device)
            if not settings.trains_critic:
                value_head.requires_grad_(False)
        self.model, self.value_head = model, value_head
        self.objective = WMTPObjective(model, value_head, settings)
        if self.strategy == "fsdp2":  # before the optimizer: sharding replaces the parameters with sharded ones
            parallel.shard(self.objective, parallel.block_classes(model), accelerator.device,
                           accelerator.mixed_precision)  # fmt: skip
        self.fingerprint = fingerprint(recipe, model)
        self.global_batch = w.batch_size * accelerator.num_processes * w.grad_accum

    def _setup_optimizer(self) -> None:
        from transformers import get_cosine_schedule_with_warmup

        recipe, w, accelerator = self.recipe, self.recipe.wmtp, self.accelerator
        groups = param_groups(self.model, w.lr, w.weight_decay)
        if self.value_head is not None and self.settings.trains_critic:
            groups += param_groups(self.value_head, recipe.critic.lr, recipe.critic.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=w.lr)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, w.warmup_steps, w.max_steps)
        if self.strategy == "fsdp2":  # accelerate keeps gradient accumulation's books; the model stays as sharded
            self.optimizer = accelerator.prepare(optimizer)
        else:
            self.objective, self.optimizer = accelerator.prepare(self.objective, optimizer)
        _write_layout(self.run_dir if self.main else None, self.strategy, accelerator, self.objective)

    def restore(self, resume: bool) -> int:
        """The step to start from: the latest checkpoint's with ``resume``, else 0; opens the metrics log."""
        start = 0
        latest = checkpoints.latest_checkpoint(self.run_dir) if resume else None
        if latest is not None:
            checkpoints.check_same_run(latest, self.fingerprint, self.global_batch)
            state = checkpoints.load_checkpoint(self.accelerator, latest, self.objective, self.optimizer,
                                                self.scheduler)  # fmt: skip
            start = self.resumed_from = state["step"]
            self.what_is_left = "The last good checkpoint is intact."
            logger.info("resumed from %s (step %d)", latest, start)
        elif resume:
            logger.warning("--resume: %s has no checkpoint yet, starting from step 0", self.run_dir)
        self.open_log(self.resumed_from if resume else None)
        self.names = metric_names(self.n_future)
        return start

    def after_step(self, done: int, record: dict[str, float]) -> None:
        """Log every ``run.log_every`` steps and checkpoint every ``run.save_every``, and both at the end."""
        w, run = self.recipe.wmtp, self.recipe.run
        if done % run.log_every == 0 or done == w.max_steps:
            self.log.write({"step": done, **record})
        if done % run.save_every == 0 or done == w.max_steps:
            checkpoints.save_checkpoint(
                self.accelerator, self.run_dir, done, run.keep_last, self.objective, self.optimizer, self.scheduler,
                {"fingerprint": self.fingerprint, "global_batch": self.global_batch},
            )  # fmt: skip
            self.what_is_left = f"The last good checkpoint (step {done}) is intact."

    def status(self, record: dict[str, float]) -> str:
        return f"loss {record['loss']:.4f}  {record['tokens_per_s']:,.0f} tok/s"

    def step(self, step: int) -> dict[str, float]:
        """One optimiser step: every micro-batch's forward and backward, clipping, the update; its metrics."""
        w, accelerator, objective = self.recipe.wmtp, self.accelerator, self.objective
        began = time.perf_counter()
        micro = [to_device(self.collate(rows(self.examples, ids)), accelerator.device)
                 for ids in self.batches.step(step)]  # fmt: skip
        counts = accelerator.reduce(sum(loss_counts(b, self.settings) for b in micro), reduction="sum")
        scale = accelerator.num_processes * w.grad_accum
        lm_scale, vf_scale = scale / max(int(counts[0]), 1), scale / max(int(counts[1]), 1)
        totals = torch.zeros(len(self.names), device=accelerator.device, dtype=torch.float64)  # sums of many terms
        for batch in micro:
            with accelerator.accumulate(objective):
                loss, metrics = objective(batch, lm_scale, vf_scale)
                metrics = accelerator.reduce(metrics, reduction="sum")
                totals += metrics
                named = dict(zip(self.names, metrics.tolist(), strict=True))
                require_finite(finite_checks(named, self.recipe, updated=step > 0), step + 1, self.what_is_left)
                accelerator.backward(loss)
        grad_norm = self._clip(step)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        record = _record(totals, self.names, self.n_future, self.settings.lambda_vf)
        seconds = time.perf_counter() - began
        record.update(grad_norm=grad_norm, lr=lr, tokens_per_s=record["tokens"] / max(seconds, 1e-9))
        return record

    def _clip(self, step: int) -> float:
        """Clip the gradients to ``wmtp.grad_clip``; the norm before, checked to be finite."""
        from accelerate.utils import DistributedType

        w, accelerator = self.recipe.wmtp, self.accelerator
        # All parameters, frozen ones included: FSDP computes the global norm only when given exactly these.
        max_norm = w.grad_clip if w.grad_clip > 0 else float("inf")
        if self.strategy == "fsdp2":
            grad_norm = parallel.clip_grad_norm(self.objective.parameters(), max_norm)
        else:
            grad_norm = accelerator.clip_grad_norm_(self.objective.parameters(), max_norm)
            grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        if accelerator.distributed_type != DistributedType.DEEPSPEED:
            causes = (
                f"wmtp.lr = {w.lr:g} is too high (lower it, or raise wmtp.warmup_steps), or no gradient "
                f"clipping (wmtp.grad_clip = {w.grad_clip:g})"
            )
            require_finite({"the gradient norm": (grad_norm, causes)}, step + 1, self.what_is_left)
        return grad_norm

    def save_final(self) -> Path:
        final_dir = self.run_dir / FINAL
        lora = None
        if self.peft_model is not None:
            lora = LoraOutput(self.peft_model, self.recipe.wmtp.lora_save, base_model_reference(self.recipe.model.path))
        if self.strategy == "fsdp2":
            _save_final_sharded(self.objective, self.tokenizer, final_dir, self.main, lora)
        else:
            _save_final(self.accelerator, self.objective, self.tokenizer, final_dir, lora)
        if self.main:
            save_resolved_recipe(self.recipe, final_dir)
        self.accelerator.wait_for_everyone()
        return final_dir


@dataclass(frozen=True)
class LoraOutput:
    """What a LoRA run's ``final/`` holds besides the tokenizer and value head (``wmtp.lora_save``): the merged model
    (``merged``, ``both``) and peft's adapter (``adapter``: in ``final/`` itself; ``both``: in ``final/adapter/``),
    whose config names ``base_model``."""

    peft_model: Any
    save: str  # adapter | merged | both
    base_model: str

    @property
    def merged(self) -> bool:
        return self.save != "adapter"

    def write_adapter(self, final_dir: Path, tensors: dict[str, torch.Tensor], base_class: type) -> None:
        """The adapter's two files, where ``wmtp.lora_save`` puts them (none for ``merged``)."""
        if self.save != "merged":
            folder = final_dir / ADAPTER_FOLDER if self.save == "both" else final_dir
            config = self.peft_model.peft_config[ADAPTER_NAME]
            save_adapter(folder, config, tensors, self.base_model, base_class)


def _save_final(accelerator, objective, tokenizer, final_dir: Path, lora: LoraOutput | None) -> None:
    """The fine-tuned model as a model folder (with its tokenizer and value head), written whole; for a LoRA run, what
    ``wmtp.lora_save`` says."""
    from wmtp_cli.model.saving import model_class

    state = accelerator.get_state_dict(objective)  # gathers sharded weights (FSDP, ZeRO-3) on the main process
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(objective)
    model_state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    with atomic_directory(final_dir, force=True) as tmp:
        if lora is None:
            unwrapped.model.save_pretrained(tmp, state_dict=model_state)
        else:  # the adapter first: merging folds it into the base weights
            lora.write_adapter(tmp, adapter_tensors(model_state.items()), model_class(unwrapped.model))
            if lora.merged:
                lora.peft_model.merge_and_unload().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if unwrapped.value_head is not None:
            head_state = {k.removeprefix("value_head."): v for k, v in state.items() if k.startswith("value_head.")}
            unwrapped.value_head.save(tmp, head_state)


def _save_final_sharded(objective, tokenizer, final_dir: Path, main: bool, lora: LoraOutput | None) -> None:
    """:func:`_save_final` for an FSDP2 run: gathered one tensor at a time (every process takes part in each
    gather) and written by the main process in bounded shards, LoRA adapters merged on the way and (as
    ``wmtp.lora_save`` says) kept as peft's adapter too."""
    from wmtp_cli.model.saving import ShardedSafetensorsWriter, lora_scalings, merge_lora, model_class, write_config

    model = objective.model
    head_state: dict[str, torch.Tensor] = {}
    adapter: dict[str, torch.Tensor] = {}

    def model_tensors():
        for name, tensor in parallel.full_tensors(objective.state_dict(), main):
            if not name.startswith("value_head."):
                yield name.removeprefix("model."), tensor
            elif tensor is not None:
                head_state[name.removeprefix("value_head.")] = tensor

    merged = lora is None or lora.merged
    tensors = model_tensors() if lora is None else collect_adapter(model_tensors(), adapter)
    with atomic_directory(final_dir, force=True) if main else nullcontext() as tmp:
        writer = ShardedSafetensorsWriter(tmp) if main and merged else None
        for name, tensor in merge_lora(tensors, lora_scalings(model)) if merged else tensors:
            if writer is not None:  # every process goes to the end of the stream: each gather is a collective
                writer.add(name, tensor)
        if not main:
            return
        if writer is not None:
            writer.close()
            write_config(model, tmp, next(model.parameters()).dtype)
        if lora is not None:
            lora.write_adapter(tmp, adapter, model_class(model))
        tokenizer.save_pretrained(tmp)
        if objective.value_head is not None:
            objective.value_head.save(tmp, head_state)


def _write_layout(run_dir: Path | None, strategy: str, accelerator, objective) -> None:
    """``parallel.json``: the strategy, the number of processes and how many parameter elements each holds (1/world
    of the model under FSDP2), in all and of the largest parameter. Every process takes part; the main writes."""
    import json

    from wmtp_cli.io import atomic_write_text

    local, total, largest, largest_size, largest_local = parallel.local_elements(objective)
    held = accelerator.gather(torch.tensor([local, largest_local], device=accelerator.device)).view(-1, 2).tolist()
    if run_dir is not None:
        record = {"strategy": strategy, "world_size": accelerator.num_processes, "parameter_elements": total,
                  "elements_per_process": [h[0] for h in held], "largest_parameter": largest,
                  "largest_parameter_elements": largest_size,
                  "largest_parameter_elements_per_process": [h[1] for h in held]}  # fmt: skip
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "parallel.json", json.dumps(record, indent=2) + "\n")
