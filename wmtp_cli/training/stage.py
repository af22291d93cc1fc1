"""What both training stages share, in the shape of torchtune's recipes: one opening and one loop.

A stage (:class:`~wmtp_cli.training.critic_stage.CriticStage`, :class:`~wmtp_cli.training.wmtp_stage.WMTPStage`)
reads like a recipe: ``setup`` (the shared :meth:`TrainingStage.open`, then its model and optimiser),
``train`` (the shared loop of :meth:`TrainingStage.train` over its own ``step``) and the save of what it
trained. The opening applies the run folder's policy, seeds every generator, and turns the scored data into
training examples with the model's tokenizer; the loop runs the steps, hands each step's metrics to
:meth:`~TrainingStage.after_step` (validation, logs, checkpoints), draws progress and stops early when the
stage says so.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from wmtp_cli.config import Recipe, recipe_to_dict, save_resolved_recipe
from wmtp_cli.data.examples import pad_id_of
from wmtp_cli.data.scored import load_scored
from wmtp_cli.model.loading import load_tokenizer
from wmtp_cli.progress import Progress
from wmtp_cli.runs import scored_path
from wmtp_cli.training.data import StepBatches, collate, training_examples
from wmtp_cli.training.runtime import MetricsLog, Trackers


class TrainingStage:
    """The opening and the loop skeleton; a stage supplies ``step`` and the hooks below."""

    progress_label = "training"

    def __init__(self, recipe: Recipe, accelerator, run_dir: Path):
        self.recipe, self.accelerator, self.run_dir = recipe, accelerator, run_dir
        self.main = accelerator.is_main_process
        self.steps_done = 0

    # The opening.
    def open(self, needs_rewards: bool = True, resume: bool = False, force: bool = False) -> None:
        """Folder policy (on the main process, the others waiting), seeds, the tokenizer, the training examples.

        The tokenizer loads before the data and the model after it, so bad data fails before a large model loads.
        """
        from accelerate.utils import set_seed

        if self.main:
            self.prepare_folder(resume, force)
        self.accelerator.wait_for_everyone()
        set_seed(self.recipe.run.seed)
        model = self.recipe.model
        self.tokenizer = load_tokenizer(model.path if model else "")
        self.collate = partial(collate, pad_id=pad_id_of(self.tokenizer))
        with self.accelerator.main_process_first():  # the first process tokenizes; the others read its cache
            scored = load_scored(scored_path(self.recipe))
            self.examples = training_examples(scored, self.tokenizer, self.recipe.data, needs_rewards)

    def prepare_folder(self, resume: bool, force: bool) -> None:
        """What to do with an earlier run in :attr:`run_dir` (the main process only); by default it is overwritten."""

    def step_batches(self, n_examples: int, batch_size: int, grad_accum: int = 1) -> StepBatches:
        """This process's micro-batches of each optimiser step, a function of the step (so resuming is exact)."""
        acc = self.accelerator
        return StepBatches(
            n_examples, batch_size, grad_accum, acc.num_processes, acc.process_index, seed=self.recipe.run.seed,
            shuffle=self.recipe.data.shuffle,
        )  # fmt: skip

    def open_log(self, resume_step: int | None = None) -> None:
        """Save the resolved recipe beside the run and open its metrics log (continued past ``resume_step``), with
        the trackers of ``run.report_to``; :meth:`train` closes both, whichever way it ends."""
        if self.main:
            save_resolved_recipe(self.recipe, self.run_dir)
        tracked = Trackers(self.accelerator, recipe_to_dict(self.recipe), self.run_name(), resume_step)
        self.log = MetricsLog(self.run_dir, enabled=self.main, resume_step=resume_step, trackers=tracked)

    def run_name(self) -> str:
        """The run's name in the trackers: its folder under ``run.output_dir`` (``myrun/wmtp-critic``)."""
        try:
            return self.run_dir.relative_to(self.recipe.run.output_dir).as_posix()
        except ValueError:  # a folder given elsewhere
            return self.run_dir.as_posix()

    # The loop.
    def train(self, start: int, max_steps: int, progress: Progress | None) -> dict[str, float]:
        """Steps ``start`` to ``max_steps`` (fewer when :meth:`should_stop` says so); the last step's metrics."""
        record: dict[str, float] = {}
        try:
            for step in range(start, max_steps):
                record = self.step(step)
                done = self.steps_done = step + 1
                self.after_step(done, record)
                if progress:
                    progress(self.progress_label, done, max_steps, self.status(record))
                if self.should_stop(done):
                    break
        finally:
            self.log.close()
        return record

    def step(self, step: int) -> dict[str, float]:
        """One optimiser step (``step`` counts from 0); its metrics."""
        raise NotImplementedError

    def after_step(self, done: int, record: dict[str, float]) -> None:
        """After ``done`` steps: validation, the metrics log, checkpoints."""

    def status(self, record: dict[str, float]) -> str:
        """The progress bar's text after a step."""
        return f"loss {record['loss']:.4f}"

    def should_stop(self, done: int) -> bool:
        """Whether to stop before ``max_steps`` (early stopping)."""
        return False
