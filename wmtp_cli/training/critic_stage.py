"""``wmtp train-critic``: stage 1, the value head on the frozen MTP model.

The model runs in eval mode with no gradient (in bf16 on a GPU that has it, else in its recipe dtype); only the value
head V(h_t) learns, by MSE to the return targets R_t over completion states (DESIGN.md section 3;
``critic.return_target``). Problems are split into training and validation (``critic.val_fraction``,
whole problems held out). Every ``critic.eval_every`` steps the head is validated; training stops
after ``critic.patience`` validations without improvement or at ``critic.max_steps``, and the best
head is kept.

The report, on the held-out problems: the validation MSE, and how well the final-state value V_{T_c}
(after the last completion token) predicts the sequence reward: Pearson correlation, and ROC AUC
when the rewards are binary. Written to ``<run>/critic/``: ``value_head.safetensors``,
``value_head.json``, ``critic_report.json``, ``metrics.jsonl`` (and ``trackers/`` for
``run.report_to: tensorboard``), the resolved recipe and versions.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from accelerate.utils import gather_object

from wmtp_cli.config import Recipe
from wmtp_cli.critic import critic_values
from wmtp_cli.data.examples import pad_id_of
from wmtp_cli.io import atomic_write_text, check_output
from wmtp_cli.losses import IGNORE_INDEX, completion_states, return_targets, value_loss_sum
from wmtp_cli.progress import Progress
from wmtp_cli.runs import RUN_FOLDER, critic_folder
from wmtp_cli.training.data import collate, rows, shard, split_by_task
from wmtp_cli.training.metrics import pearson, roc_auc
from wmtp_cli.training.runtime import make_accelerator, require_finite, to_device
from wmtp_cli.training.setup import load_model, new_value_head
from wmtp_cli.training.stage import TrainingStage

logger = logging.getLogger(__name__)

REPORT = "critic_report.json"


@dataclass
class CriticReport:
    steps: int
    best_step: int
    stopped_early: bool
    train_examples: int
    val_examples: int
    val_loss: float  # MSE over completion states of the held-out problems
    final_value_pearson: float  # V_{T_c} against the reward
    final_value_auc: float | None  # for binary rewards with both classes present
    reward_mean: float
    seconds: float


@dataclass
class CriticResult:
    folder: Path
    report: CriticReport


def _final_positions(labels: torch.Tensor) -> torch.Tensor:
    """Index of each row's last trained position T_c (B,)."""
    positions = torch.arange(labels.shape[1], device=labels.device)
    return torch.where(labels != IGNORE_INDEX, positions, -1).max(dim=1).values


class _CriticTrainer:
    def __init__(self, recipe: Recipe, accelerator, model, value_head, tokenizer):
        self.recipe, self.accelerator, self.model, self.head = recipe, accelerator, model, value_head
        self.collate = partial(collate, pad_id=pad_id_of(tokenizer))

    def values(self, batch: dict) -> torch.Tensor:
        """V (B, T): the frozen model without gradients, the head with them."""
        with torch.no_grad(), self.accelerator.autocast():
            h_trunk, rotary, _ = self.model.embed_and_trunk(batch["input_ids"])  # (B, T, d)
        return critic_values(self.head, self.model, batch["input_ids"], h_trunk, rotary)  # (B, T)

    def losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sum of squared errors, completion states, values) of one batch."""
        c = self.recipe.critic
        values = self.values(batch)  # (B, T)
        targets = return_targets(c.return_target, values, batch["reward"], batch["labels"], batch["dense"],
                                 c.gamma, c.gae_lambda)  # fmt: skip
        total, count = value_loss_sum(values, targets, completion_states(batch["labels"]))
        return total, torch.as_tensor(count, device=values.device), values

    @torch.no_grad()
    def evaluate(self, examples) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Validation MSE over every process's shard, and all final-state values with their rewards."""
        acc = self.accelerator
        sums = torch.zeros(2, device=acc.device)
        finals, rewards = [], []
        indices = shard(len(examples), acc.num_processes, acc.process_index)
        size = self.recipe.critic.batch_size
        for start in range(0, len(indices), size):
            batch = to_device(self.collate(rows(examples, indices[start : start + size])), acc.device)
            total, count, values = self.losses(batch)
            sums += torch.stack([total.float(), count.float()])
            last = _final_positions(batch["labels"])
            finals.append(values.gather(1, last.clamp(min=0)[:, None]).squeeze(1).float())
            rewards.append(batch["reward"].float())
        sums = acc.reduce(sums, reduction="sum")
        # Shards differ in size by one, so gather Python lists rather than equal-shaped tensors.
        empty = [sums[:0]]
        local = list(zip(torch.cat(finals or empty).tolist(), torch.cat(rewards or empty).tolist(), strict=True))
        pairs = gather_object(local) if acc.num_processes > 1 else local
        finals_all = torch.tensor([v for v, _ in pairs], dtype=torch.float64)
        rewards_all = torch.tensor([r for _, r in pairs], dtype=torch.float64)
        return float(sums[0] / sums[1].clamp(min=1)), finals_all, rewards_all


def _unwrap(head: torch.nn.Module) -> torch.nn.Module:
    return head.module if isinstance(head, torch.nn.parallel.DistributedDataParallel) else head


def train_critic(recipe: Recipe, progress: Progress | None = None) -> CriticResult:
    """Run stage 1 as the recipe says; see the module docstring."""
    began = time.perf_counter()
    out_dir = check_output(critic_folder(recipe), RUN_FOLDER, kind="folder")
    accelerator = make_accelerator(recipe.run.mixed_precision, report_to=recipe.run.report_to, run_dir=out_dir)
    stage = CriticStage(recipe, accelerator, out_dir)
    stage.setup()
    stage.train(0, recipe.critic.max_steps, progress)
    report = stage.save_best(began)
    return CriticResult(out_dir, report)


class CriticStage(TrainingStage):
    """One train-critic run: :meth:`setup` (the shared opening, the frozen model, the head), :meth:`train` (the
    shared loop of :meth:`step`, validating every ``critic.eval_every`` steps, stopping after ``critic.patience``
    validations without improvement), :meth:`save_best` (the best head and the report)."""

    progress_label = "critic"

    def setup(self) -> None:
        recipe, c, accelerator = self.recipe, self.recipe.critic, self.accelerator
        self.open()
        self.train_set, self.val_set = split_by_task(self.examples, c.val_fraction, recipe.run.seed)
        self.batches = self.step_batches(len(self.train_set), c.batch_size)
        model, _ = load_model(recipe, accelerator.device)
        model.requires_grad_(False)
        if accelerator.device.type == "cuda" and torch.cuda.is_bf16_supported() and model.dtype == torch.float32:
            model.to(torch.bfloat16)  # frozen: bf16 halves memory and time, and nothing is updated in it
        head = new_value_head(model, recipe).to(accelerator.device)
        self.optimizer = torch.optim.AdamW(head.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        if accelerator.num_processes > 1:
            # The model is frozen and the head tiny: plain data parallelism for the head, whatever the launch
            # config says (an FSDP or DeepSpeed config shards the model of stage 2; here there is nothing to shard).
            device_ids = [accelerator.device.index] if accelerator.device.type == "cuda" else None
            head = torch.nn.parallel.DistributedDataParallel(head, device_ids=device_ids)
        self.head = head
        self.trainer = _CriticTrainer(recipe, accelerator, model, head, self.tokenizer)
        self.open_log()
        self.best_loss, self.best_step, self.best_state, self.bad = math.inf, 0, None, 0

    def step(self, step: int) -> dict[str, float]:
        c, accelerator = self.recipe.critic, self.accelerator
        (ids,) = self.batches.step(step)
        batch = to_device(self.collate(rows(self.train_set, ids)), accelerator.device)
        total, count, _ = self.trainer.losses(batch)
        sums = accelerator.reduce(torch.stack([total.detach().float(), count.float()]), reduction="sum")
        loss_value = float(sums[0] / sums[1].clamp(min=1))
        causes = (
            f"critic.lr = {c.lr:g} is too high (the value head diverged), non-finite rewards in the scored data, "
            f"or non-finite weights in the model (model.path)"
        )
        require_finite({"the critic loss": (loss_value, causes)}, step + 1, "No value head was saved.")
        (total * accelerator.num_processes / sums[1].clamp(min=1)).backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.head.parameters(), 1.0))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"step": step + 1, "loss": loss_value, "grad_norm": grad_norm}

    def after_step(self, done: int, record: dict[str, float]) -> None:
        """Validate every ``critic.eval_every`` steps (keeping the best head), then log."""
        c = self.recipe.critic
        if done % c.eval_every == 0 or done == c.max_steps:
            val_loss, _, _ = self.trainer.evaluate(self.val_set)
            record["val_loss"] = val_loss
            if val_loss < self.best_loss:
                self.best_loss, self.best_step, self.bad = val_loss, done, 0
                self.best_state = {k: v.detach().clone() for k, v in _unwrap(self.head).state_dict().items()}
            else:
                self.bad += 1
        if done % self.recipe.run.log_every == 0 or "val_loss" in record:
            self.log.write(record)

    def status(self, record: dict[str, float]) -> str:
        return f"loss {record['loss']:.4f}" + (f"  best val {self.best_loss:.4f}" if self.best_state else "")

    def should_stop(self, done: int) -> bool:
        if self.bad >= self.recipe.critic.patience:
            logger.info("validation loss has not improved for %d validations: stopping at step %d", self.bad, done)
            return True
        return False

    def save_best(self, began: float) -> CriticReport:
        """Restore the best head, report on the validation problems, and save both (the main process)."""
        c = self.recipe.critic
        head = _unwrap(self.head)
        head.load_state_dict(self.best_state)
        val_loss, finals, rewards = self.trainer.evaluate(self.val_set)
        binary = bool(((rewards == 0) | (rewards == 1)).all())
        auc = roc_auc(finals, rewards == 1) if binary else None
        report = CriticReport(
            steps=self.steps_done, best_step=self.best_step, stopped_early=self.steps_done < c.max_steps,
            train_examples=len(self.train_set), val_examples=len(self.val_set), val_loss=val_loss,
            final_value_pearson=pearson(finals, rewards),
            final_value_auc=None if auc is None or math.isnan(auc) else auc,
            reward_mean=float(rewards.mean()) if len(rewards) else math.nan, seconds=time.perf_counter() - began,
        )  # fmt: skip
        if self.main:
            head.save(self.run_dir)
            atomic_write_text(self.run_dir / REPORT, json.dumps(asdict(report), indent=2) + "\n")
        self.accelerator.wait_for_everyone()
        return report
