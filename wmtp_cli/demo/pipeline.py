"""``wmtp demo``: every stage of WMTP, in order, on one recipe (by default ``recipes/tiny-demo.yaml``).

1. **pretrain** a small MTP model from scratch (:mod:`wmtp_cli.pretraining`); cached: a rerun with
   the same settings reuses it.
2. **score** the training problems' solutions (``reward.source``, e.g. execution in the sandbox) and
   check the rewards against the data set's own labels.
3. **train-critic**: the value head on the frozen pretrained model; then the evidence of
   :mod:`wmtp_cli.demo.evidence` on the held-out test split (AUC, |delta| on the mutated tokens).
4. **train-wmtp** three times from the same model, critic, data and steps: ``critic``, ``uniform``
   and ``ntp`` weighting.
5. **eval** the pretrained model and the three fine-tuned ones on the test split: pass@k from
   ``eval.n_samples`` samples per problem, and each head's CE and top-1 accuracy on the references.
6. **inspect** the critic's weights on one correct and one incorrect held-out solution.
7. A summary (``summary.json``), a comparison table (``comparison.md``) and an HTML report with the
   metric curves and the weight views (``report.html``) in ``<run folder>/demo``.

Each stage is also its own command; the demo calls the same library functions, with the recipe's
settings, so its outputs are where those commands put them (the run folder of :mod:`wmtp_cli.runs`).
Stages after pretraining run again on every call (``--force`` semantics), so the outputs always
belong to this run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from wmtp_cli.config import Recipe, save_resolved_recipe
from wmtp_cli.demo.summary import CriticSummary, DemoSummary, EvalSettings, ModelResult, PretrainSummary, ScoreSummary
from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_write_text, check_output
from wmtp_cli.losses.diagnostics import logged_diagnostics
from wmtp_cli.progress import Progress
from wmtp_cli.runs import RUN_FOLDER, critic_folder, run_folder
from wmtp_cli.weightings import WEIGHTINGS

if TYPE_CHECKING:
    from wmtp_cli.demo.evidence import CriticEvidence
    from wmtp_cli.pretraining.pretrain import PretrainResult
    from wmtp_cli.rewards.scoring import ScoreResult
    from wmtp_cli.training.critic_stage import CriticResult

logger = logging.getLogger(__name__)

DEMO_WEIGHTINGS = ("critic", "uniform", "ntp")


@dataclass
class DemoResult:
    folder: Path  # <run folder>/demo
    summary: DemoSummary
    report: Path
    views: list  # (caption, InspectionResult) for the weight views


class _Stages:
    """Times each stage and prefixes its progress bars with the stage's name."""

    def __init__(self, progress: Progress | None, announce: Callable[[str], None] | None):
        self.seconds: dict[str, float] = {}
        self._progress, self._announce = progress, announce
        self._began = time.perf_counter()

    def run(self, name: str, work: Callable[[Progress | None], object]):
        if self._announce:
            self._announce(name)
        began = time.perf_counter()
        progress = None
        if self._progress is not None:
            outer = self._progress

            def progress(stage: str, *args, name=name) -> None:
                outer(f"{name}: {stage}", *args)

        out = work(progress)
        self.seconds[name] = time.perf_counter() - began
        return out

    def finish(self) -> dict[str, float]:
        """The seconds of each stage and in all (``total``), to 0.1 s."""
        self.seconds["total"] = time.perf_counter() - self._began
        return {name: round(seconds, 1) for name, seconds in self.seconds.items()}


@dataclass
class _Trained:
    """What the training stages leave: their results, the critic's evidence, and each fine-tuning's metrics."""

    pretrained: PretrainResult
    scored: ScoreResult
    critic: CriticResult
    evidence: CriticEvidence
    views: list  # (caption, InspectionResult)
    finals: dict[str, Path]  # weighting -> its final model folder
    logged: dict[str, list[dict]]  # weighting -> its training metrics


def _curve(records: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if key in r and "step" in r]


def _label_agreement(scored: Path) -> ScoreSummary:
    """How often the reward (from the recipe's reward source) agrees with the data set's own label."""
    from wmtp_cli.data.scored import load_scored

    rows = load_scored(scored)
    labelled = [(r["reward"], r["label"]) for r in rows if r.get("label") is not None]
    agree = sum((reward >= 1.0) == (label == 1) for reward, label in labelled)
    correct = sum(r["reward"] >= 1.0 for r in rows)
    return ScoreSummary(completions=len(rows), correct=correct, agreement=agree / len(labelled) if labelled else None)


def _with_weighting(recipe: Recipe, weighting: str) -> Recipe:
    """The recipe with another weighting; uniform and ntp use no delta, so the options on delta are off."""
    no_delta = not WEIGHTINGS[weighting].uses_delta
    wmtp = dataclasses.replace(
        recipe.wmtp, weighting=weighting, abs_delta=recipe.wmtp.abs_delta and not no_delta,
        zscore_delta=recipe.wmtp.zscore_delta and not no_delta,
    )  # fmt: skip
    run = dataclasses.replace(recipe.run, push_to_hub=None)  # three runs: none is the model to share
    return dataclasses.replace(recipe, wmtp=wmtp, run=run)


def _test_data(recipe: Recipe):
    return dataclasses.replace(recipe.data, split="test", limit=None, scored=None)


def _evidence(recipe: Recipe, progress: Progress | None) -> tuple[CriticEvidence, list]:
    """The critic's evidence on the test split, and the weight views of one correct and one incorrect solution."""
    from wmtp_cli.data.sources import load_problems
    from wmtp_cli.data.tiny_code import tiny_code_mutations
    from wmtp_cli.demo.evidence import critic_evidence
    from wmtp_cli.inspection import inspect_weights
    from wmtp_cli.inspection.locate import Sources, load_sources

    test = _test_data(recipe)
    problems = load_problems(test, seed=recipe.run.seed).to_list()
    mutations = tiny_code_mutations(test)
    model, tokenizer, head, _ = load_sources(Sources(model=recipe.model.path, critic=critic_folder(recipe)))
    callback = (lambda done, total: progress("test split", done, total)) if progress else None
    evidence = critic_evidence(model, tokenizer, head, problems, mutations, progress=callback)

    shown = next((p for p in problems if p["solutions"] and p["incorrect_solutions"]), None)
    if shown is None:
        raise UsageError("the test split has no problem with both a correct and an incorrect solution to show")
    wrong = shown["incorrect_solutions"][0]
    kind = mutations[shown["task_id"]][wrong]["kind"]
    tau = recipe.wmtp.temperature
    views = [
        (f"correct: {shown['task_id']}", inspect_weights(model, tokenizer, head, shown["solutions"][0],
                                                        prompt=shown["prompt"], temperature=tau)),
        (f"incorrect ({kind}): {shown['task_id']}", inspect_weights(model, tokenizer, head, wrong,
                                                                   prompt=shown["prompt"], temperature=tau)),
    ]  # fmt: skip
    return evidence, views


def _eval_request(recipe: Recipe, name: str, model_dir: Path, out_dir: Path):
    from wmtp_cli.evaluation.runner import EvalRequest

    # The demo's evidence is about tiny-code, whatever benchmarks the recipe's eval section lists.
    fp32 = dataclasses.replace(
        recipe, model=dataclasses.replace(recipe.model, dtype="fp32"),
        eval=dataclasses.replace(recipe.eval, benchmarks=["tiny-code"]),
    )  # fmt: skip
    return EvalRequest.for_model(fp32, model_dir, out_dir, output=out_dir / f"{name}.json", head_metrics=True)


def _evaluate(recipe: Recipe, name: str, model_dir: Path, logged: list[dict], allow: bool, progress) -> ModelResult:
    """Evaluate one model; ``logged``: the metrics of the fine-tuning that made it (none for the pretrained one)."""
    from wmtp_cli.evaluation.runner import run_eval

    request = _eval_request(recipe, name, model_dir, run_folder(recipe) / "demo" / "eval")
    [(report, _)] = run_eval(request, allow_code_execution=allow, progress=progress)
    heads = report.head_metrics or []
    # Head 1's CE compares across weightings; the weighted LM loss does not (ntp trains head 1 alone).
    # A step whose rows were all below wmtp.min_reward logs no CE.
    train_loss = next((r["ce_head_1"] for r in reversed(logged) if "ce_head_1" in r), None)
    return ModelResult(
        name=name, model=str(model_dir), pass_at_k=report.pass_at_k, n_problems=report.n_problems,
        n_passed=report.n_passed, n_samples_total=report.n_samples, head_ce=[h["cross_entropy"] for h in heads],
        head_top1=[h["top1_accuracy"] for h in heads], train_loss=train_loss, weights=logged_diagnostics(logged),
    )  # fmt: skip


def check_demo_recipe(recipe: Recipe) -> None:
    """The demo's own requirements, before any work starts."""
    if recipe.model is None:
        raise UsageError("the demo pretrains a model into model.path: give the recipe a model section")
    if recipe.data.source != "tiny-code":
        raise UsageError(
            f"wmtp demo runs on the tiny-code benchmark (its evidence needs the recorded mutations), not "
            f"data.source={recipe.data.source}; run the stages as their own commands for other data"
        )
    if recipe.data.scored is not None:
        raise UsageError("wmtp demo scores the data itself: leave data.scored null")
    report_dir = check_output(run_folder(recipe) / "demo", RUN_FOLDER, kind="folder")
    for name in ("pretrained", *DEMO_WEIGHTINGS):  # the evaluations' settings and outputs fail now, not after training
        _eval_request(recipe, name, Path(recipe.model.path), report_dir / "eval")


def run_demo(
    recipe: Recipe,
    recipe_path: str = "",
    allow_code_execution: bool = False,
    force_pretrain: bool = False,
    progress: Progress | None = None,
    announce: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run every stage (see the module docstring); ``announce(stage)`` is called as each begins."""
    check_demo_recipe(recipe)
    allow = allow_code_execution or recipe.reward.allow_code_execution
    stages = _Stages(progress, announce)
    trained = _train(recipe, stages, allow, force_pretrain)
    models = [
        stages.run(f"eval {name}", partial(_evaluate, recipe, name, model_dir, trained.logged.get(name, []), allow))
        for name, model_dir in [("pretrained", Path(recipe.model.path)), *trained.finals.items()]
    ]
    curves = _curves(recipe, trained)
    summary = _summary(recipe, recipe_path, stages.finish(), trained, models)
    folder = run_folder(recipe) / "demo"
    report = _write(recipe, summary, curves, trained, folder)
    return DemoResult(folder, summary, report, trained.views)


def _train(recipe: Recipe, stages: _Stages, allow: bool, force_pretrain: bool) -> _Trained:
    """Pretrain, score, train the critic and measure it, then fine-tune once with each weighting."""
    from wmtp_cli.pretraining import pretrain
    from wmtp_cli.rewards.scoring import score
    from wmtp_cli.training import train_critic, train_wmtp
    from wmtp_cli.training.runtime import read_metrics

    pretrained = stages.run("pretrain", lambda p: pretrain(recipe, force=force_pretrain, progress=p))
    scored = stages.run("score", lambda p: score(recipe, allow_code_execution=allow, progress=p))
    critic = stages.run("train-critic", lambda p: train_critic(recipe, progress=p))
    evidence, views = stages.run("critic evidence", lambda p: _evidence(recipe, p))
    finals, logged = {}, {}
    for weighting in DEMO_WEIGHTINGS:
        variant = _with_weighting(recipe, weighting)
        result = stages.run(f"train-wmtp {weighting}", lambda p, v=variant: train_wmtp(v, force=True, progress=p))
        finals[weighting], logged[weighting] = result.final_dir, read_metrics(result.run_dir)
    return _Trained(pretrained, scored, critic, evidence, views, finals, logged)


def _curves(recipe: Recipe, trained: _Trained) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The report's charts: title -> series name -> (step, value) points."""
    from wmtp_cli.training.runtime import read_metrics

    pretrain_metrics = read_metrics(run_folder(recipe) / "pretrain" / "train")
    critic_metrics = read_metrics(trained.critic.folder)
    return {
        "pretraining loss (uniform MTP)": {"loss": _curve(pretrain_metrics, "loss")},
        "critic loss (value MSE)": {
            "train": _curve(critic_metrics, "loss"), "validation": _curve(critic_metrics, "val_loss"),
        },
        "fine-tuning loss (head-1 CE)": {w: _curve(records, "ce_head_1") for w, records in trained.logged.items()},
    }  # fmt: skip


def _summary(
    recipe: Recipe, recipe_path: str, seconds: dict[str, float], trained: _Trained, models: list[ModelResult]
) -> DemoSummary:
    pretrained, e = trained.pretrained, recipe.eval
    settings = EvalSettings("tiny-code", "test", models[0].n_problems, e.n_samples, e.temperature, sorted(set(e.k)))
    return DemoSummary(
        recipe=recipe_path,
        seconds=seconds,
        pretrain=PretrainSummary(cached=pretrained.cached, steps=pretrained.steps, loss=pretrained.last.get("loss")),
        score=_label_agreement(trained.scored.path),
        critic=CriticSummary(val_auc=trained.critic.report.final_value_auc, **trained.evidence.as_dict()),
        eval=settings,
        models=models,
    )


def _write(recipe: Recipe, summary: DemoSummary, curves: dict, trained: _Trained, folder: Path) -> Path:
    """``summary.json``, the comparison table, the report with the weight views, and the recipe, in ``folder``."""
    from wmtp_cli.demo.report import write_report
    from wmtp_cli.inspection import render_html

    header = {"model": recipe.model.path, "critic": str(trained.critic.folder),
              "temperature": f"{recipe.wmtp.temperature:g}"}  # fmt: skip
    pages = [(caption, render_html(view, header, title=f"WMTP weights, {caption}")) for caption, view in trained.views]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "summary.json", summary.to_json())
    report = write_report(summary, curves, pages, folder)
    save_resolved_recipe(recipe, folder)
    return report
