"""``wmtp compare``: every (seed, weighting, grid value) cell of one recipe, fine-tuned and evaluated alike.

A cell is the recipe with ``run.seed``, ``wmtp.weighting`` and, with a grid, one value of the grid's
key. What cells share is made once:

- **pretraining**: when the recipe's model is one ``wmtp pretrain`` makes (its folder is missing or
  holds ``pretrain.json``), it is pretrained once, with the recipe's own seed; every cell fine-tunes
  that model;
- **scoring**: once, when it scores the data set's own solutions (``reward.completions: dataset``: no
  sampling, so no seed); otherwise once per seed;
- **the critic**: once per seed (and grid value, when the grid's key is a ``critic.`` key), for the cells
  with ``weighting=critic``.

Everything goes under ``<run folder>/compare`` (or ``--out``): ``runs/`` (the shared stages and each
cell's own run folder), ``cells/<cell>.json`` (a finished cell: its settings and per-problem results;
a rerun skips the cells whose record matches, so an interrupted compare resumes), and the results of
:mod:`wmtp_cli.compare.report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmtp_cli.config import Recipe, load_recipe, recipe_to_dict, save_resolved_recipe
from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_write_text, check_output
from wmtp_cli.progress import Progress
from wmtp_cli.runs import run_folder
from wmtp_cli.weightings import WEIGHTINGS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    seed: int
    weighting: str
    grid: Any = None  # the grid key's value in this cell; None without a grid

    def name(self, grid_key: str | None) -> str:
        grid = f"-{grid_key}={self.grid}" if grid_key is not None else ""
        return f"{self.weighting}{grid}-seed{self.seed}"


@dataclass
class ComparePlan:
    """The resolved comparison: the base recipe, its cells and the recipe of each, where it all goes."""

    base: Recipe
    recipe_path: Path
    overrides: list[str]
    seeds: list[int]
    weightings: list[str]
    grid_key: str | None
    grid_values: list[Any]
    baseline: str
    folder: Path
    cells: list[Cell] = field(default_factory=list)
    recipes: dict[Cell, Recipe] = field(default_factory=dict)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; one line saying what is wrong otherwise."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError("--seeds is empty: give seeds like --seeds 0,1,2")
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--seeds {text!r}: seeds are integers, like --seeds 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r} names a seed twice")
    return seeds


def parse_weightings(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise UsageError("--weightings is empty: give e.g. --weightings critic,uniform,ntp")
    unknown = [n for n in names if n not in WEIGHTINGS]
    if unknown:
        raise UsageError(f"unknown weighting {unknown[0]!r} in --weightings; choose from {', '.join(WEIGHTINGS)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--weightings {text!r} names a weighting twice")
    return names


def parse_grid(text: str | None) -> tuple[str | None, list[str]]:
    """``"wmtp.temperature=0.1,0.3"`` -> ("wmtp.temperature", ["0.1", "0.3"]) (checked against the recipe later)."""
    if text is None:
        return None, []
    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or "." not in key or not items:
        raise UsageError(f"--grid {text!r}: expected section.key=value1,value2,... e.g. wmtp.temperature=0.1,0.3,1")
    return key.strip(), items


def plan_compare(
    recipe_path: Path,
    overrides: Sequence[str],
    seeds: list[int],
    weightings: list[str],
    grid: tuple[str | None, list[str]] = (None, []),
    baseline: str = "uniform",
    out: Path | None = None,
) -> ComparePlan:
    """Every cell's recipe, checked before anything runs (a bad grid value, key or baseline is one line)."""
    if baseline not in weightings:
        raise UsageError(f"--baseline {baseline} is not among --weightings ({', '.join(weightings)})")
    base = load_recipe(recipe_path, overrides, need=("model", "data", "wmtp", "eval"))
    grid_key, grid_texts = grid
    if grid_key == "wmtp.weighting" or grid_key == "run.seed":
        raise UsageError(f"--grid {grid_key}: use --weightings and --seeds for that")
    folder = check_output(out or run_folder(base) / "compare", "the compare folder", kind="folder")
    plan = ComparePlan(base, recipe_path, list(overrides), seeds, weightings, grid_key, [], baseline, folder)
    values: list[Any] = [None]
    if grid_key is not None:
        values = []
        for text in grid_texts:
            try:
                resolved = load_recipe(recipe_path, [*overrides, f"{grid_key}={text}"])
            except UsageError as exc:
                raise UsageError(f"--grid {grid_key}={text}: {exc}") from None
            section, name = grid_key.split(".", 1)
            values.append(getattr(getattr(resolved, section), name))
    plan.grid_values = values if grid_key is not None else []
    for value in values:
        for weighting in weightings:
            for seed in seeds:
                cell = Cell(seed, weighting, value)
                plan.cells.append(cell)
                plan.recipes[cell] = _cell_recipe(plan, cell)
    return plan


def _cell_recipe(plan: ComparePlan, cell: Cell) -> Recipe:
    # run.push_to_hub is off: every cell would push to the one repo
    extra = [f"run.seed={cell.seed}", f"wmtp.weighting={cell.weighting}",
             f"run.output_dir={plan.folder / 'runs'}", f"run.name={cell.name(plan.grid_key)}",
             "run.push_to_hub=null"]  # fmt: skip
    if not WEIGHTINGS[cell.weighting].uses_delta:  # the options on delta do not apply
        extra += ["wmtp.abs_delta=false", "wmtp.zscore_delta=false"]
    if plan.grid_key is not None:
        extra.append(f"{plan.grid_key}={_yaml(cell.grid)}")
    try:
        return load_recipe(plan.recipe_path, [*plan.overrides, *extra], need=("model", "data", "wmtp", "eval"))
    except UsageError as exc:
        raise UsageError(f"cell {cell.name(plan.grid_key)}: {exc}") from None


def _yaml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _key(settings: Any) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Running.


@dataclass
class CompareResult:
    folder: Path
    table: dict
    computed: list[str]  # cells run this time
    reused: list[str]  # cells found finished
    seconds: float


def run_compare(
    plan: ComparePlan,
    allow_code_execution: bool = False,
    progress: Progress | None = None,
    announce: Callable[[str], None] | None = None,
) -> CompareResult:
    """Run every unfinished cell of ``plan`` (see the module docstring), then write the comparison."""
    from wmtp_cli.compare.report import write_comparison

    began = time.perf_counter()
    say = announce or (lambda text: None)
    plan.folder.mkdir(parents=True, exist_ok=True)
    save_resolved_recipe(plan.base, plan.folder)
    cells_dir = plan.folder / "cells"
    computed, reused = [], []
    shared = _SharedStages(plan, allow_code_execution, progress, say)
    for cell in plan.cells:
        name = cell.name(plan.grid_key)
        record_path = cells_dir / f"{name}.json"
        key = _key(recipe_to_dict(plan.recipes[cell]))
        if _finished(record_path, key):
            reused.append(name)
            continue
        say(f"cell {len(computed) + len(reused) + 1}/{len(plan.cells)}: {name}")
        record = _run_cell(plan, cell, shared, allow_code_execution, progress)
        atomic_write_text(record_path, json.dumps({"key": key, **record}, indent=1) + "\n")
        computed.append(name)
    table = write_comparison(plan, cells_dir)
    return CompareResult(plan.folder, table, computed, reused, time.perf_counter() - began)


def _finished(path: Path, key: str) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


class _SharedStages:
    """Pretraining, scoring and critics, each made once for the cells that share it."""

    def __init__(self, plan: ComparePlan, allow: bool, progress: Progress | None, say: Callable[[str], None]):
        self.plan, self.allow, self.progress, self.say = plan, allow, progress, say
        self.scored: dict[Any, Path] = {}
        self.critics: dict[Any, Path] = {}
        self.pretrained = False

    def model(self) -> None:
        """Pretrain the recipe's model once, when it is one ``wmtp pretrain`` makes."""
        from wmtp_cli.pretraining import pretrain

        if self.pretrained:
            return
        path = Path(self.plan.base.model.path)
        if not path.exists() or (path / "pretrain.json").is_file():
            self.say("pretrain (shared by every cell)")
            pretrain(self.plan.base, progress=self.progress)
        self.pretrained = True

    def scored_data(self, recipe: Recipe) -> Path:
        from wmtp_cli.rewards.scoring import score

        per_seed = recipe.reward.completions != "dataset"  # model samples depend on the seed
        key = recipe.run.seed if per_seed else None
        if key not in self.scored:
            name = f"shared/score-seed{recipe.run.seed}" if per_seed else "shared/score"
            scoring = _renamed(recipe, self.plan.folder / "runs", name)
            self.say(f"score ({'seed ' + str(recipe.run.seed) if per_seed else 'shared by every cell'})")
            result = score(scoring, allow_code_execution=self.allow, progress=self.progress)
            self.scored[key] = result.path
        return self.scored[key]

    def critic(self, recipe: Recipe, scored: Path) -> Path:
        from wmtp_cli.training import train_critic

        settings = {"critic": recipe_to_dict(recipe)["critic"], "seed": recipe.run.seed, "scored": str(scored)}
        key = _key(settings)
        if key not in self.critics:
            name = f"shared/critic-seed{recipe.run.seed}-{key[:6]}"
            critic_recipe = _with_scored(_renamed(recipe, self.plan.folder / "runs", name), scored)
            done = self.plan.folder / "runs" / name / "critic"
            if not _finished(done / "compare_key.json", key):
                self.say(f"train-critic (seed {recipe.run.seed})")
                train_critic(critic_recipe, progress=self.progress)
                atomic_write_text(done / "compare_key.json", json.dumps({"key": key}) + "\n")
            self.critics[key] = done
        return self.critics[key]


def _renamed(recipe: Recipe, output_dir: Path, name: str) -> Recipe:
    import dataclasses

    return dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, output_dir=str(output_dir), name=name))


def _with_scored(recipe: Recipe, scored: Path) -> Recipe:
    import dataclasses

    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, scored=str(scored)))


def _run_cell(plan: ComparePlan, cell: Cell, shared: _SharedStages, allow: bool, progress: Progress | None) -> dict:
    """Fine-tune and evaluate one cell; its record (settings, diagnostics, per-problem pass@k)."""
    import dataclasses

    from wmtp_cli.evaluation.runner import EvalRequest, run_eval
    from wmtp_cli.losses.diagnostics import logged_diagnostics
    from wmtp_cli.training import train_wmtp
    from wmtp_cli.training.runtime import read_metrics

    recipe = plan.recipes[cell]
    shared.model()
    scored = shared.scored_data(recipe)
    recipe = _with_scored(recipe, scored)
    if WEIGHTINGS[cell.weighting].uses_critic:
        critic = shared.critic(recipe, scored)
        recipe = dataclasses.replace(recipe, wmtp=dataclasses.replace(recipe.wmtp, critic_path=str(critic)))
    trained = train_wmtp(recipe, force=True, progress=progress)
    request = EvalRequest.for_model(recipe, trained.final_dir, trained.run_dir / "eval")
    reports = run_eval(request, allow_code_execution=allow, progress=progress)
    benchmarks = {}
    for report, _ in reports:
        problems = [{"task_id": p.task_id, "n": p.n, "c": p.c, "pass_at_k": p.pass_at_k} for p in report.problems]
        benchmarks[report.benchmark] = {"k": request.k, "problems": problems}
    return {
        "cell": {"seed": cell.seed, "weighting": cell.weighting, "grid": cell.grid, "grid_key": plan.grid_key},
        "weights": logged_diagnostics(read_metrics(trained.run_dir)),
        "train": trained.last,
        "benchmarks": benchmarks,
    }
