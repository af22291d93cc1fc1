"""``wmtp score``: attach a reward to every (prompt, completion) of a recipe's data.

Completions are the data set's own solutions (correct and incorrect), the model's samples, or
both (``reward.completions``). Rewards come from ``reward.source``: ``labels`` (1 correct / 0
incorrect), ``execution`` (tests run in the sandbox: the fraction passed, or all-or-nothing) or
``reward_model``; ``reward.dense`` adds per-token rewards aligned to the policy's tokens.

Work is done in chunks of problems; each finished chunk is written to ``<run>/score_cache/``, so
a rerun after an interruption picks up where it stopped. The cache is keyed by everything that
decides the result (data, reward and model settings, seed); a changed recipe starts afresh. The
scored data set goes to ``<run>/scored`` (``datasets.load_from_disk``) with the resolved recipe and
``run_info.json`` beside it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wmtp_cli.config import Recipe, save_resolved_recipe
from wmtp_cli.data.records import ProblemRecord
from wmtp_cli.data.scored import scored_row, write_scored
from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_write_text, check_output
from wmtp_cli.progress import Progress
from wmtp_cli.reward_sources import REWARD_SOURCES, reward_source
from wmtp_cli.rewards.dense import dense_rewards
from wmtp_cli.rewards.resources import ScoringResources
from wmtp_cli.runs import RUN_FOLDER, run_folder, scored_path, settings_key

logger = logging.getLogger(__name__)

CHUNK_PROBLEMS = 32


@dataclass
class SourceSummary:
    """Figures for one source in the scored data."""

    count: int
    reward_mean: float
    pass_rate: float | None  # share with every test passed (execution) or reward 1 (labels)
    histogram: list[int] = field(default_factory=list)  # counts over 10 equal bins of [lo, hi]
    bins: tuple[float, float] = (0.0, 1.0)


@dataclass
class ScoreResult:
    path: Path  # the scored data set (datasets.load_from_disk)
    run_dir: Path
    rows: int
    summary: dict[str, SourceSummary]
    reused_chunks: int


def _check_settings(recipe: Recipe, allow_code_execution: bool) -> None:
    reward = recipe.reward
    source = reward_source(reward.source)
    if not source.scores_samples and reward.completions != "dataset":
        others = ", ".join(s.name for s in REWARD_SOURCES.values() if s.scores_samples)
        raise UsageError(
            f"reward.source '{source.name}' scores only the data set's own solutions (model samples have no label): "
            f"set reward.completions=dataset, or use {others.replace(', ', ' or ')}"
        )
    if (reward.completions != "dataset" or reward.dense != "none") and recipe.model is None:
        raise UsageError(
            f"reward.completions={reward.completions} / reward.dense={reward.dense} need model.path "
            "(the policy that samples, and whose tokens dense rewards align to)"
        )
    if source.runs_code:
        from wmtp_cli.execution import require_code_execution, resolve_isolation

        require_code_execution(allow_code_execution or reward.allow_code_execution)
        resolve_isolation(recipe.execution.isolation)  # no working sandbox: refuse now, not after loading data


def _completion_rows(problem: ProblemRecord, samples: list[str] | None, completions: str) -> list[dict]:
    """The rows to score for ``problem``: its solutions (labelled), its model samples, or both."""
    made = []
    if completions in ("dataset", "both"):
        made += [(c, "solution", 1) for c in problem["solutions"]]
        made += [(c, "incorrect_solution", 0) for c in problem["incorrect_solutions"]]
    if completions in ("model", "both"):
        made += [(c, "sample", None) for c in samples or []]
    return [
        scored_row(problem["task_id"], problem["source"], problem["prompt"], completion, origin=origin, label=label)
        for completion, origin, label in made
    ]


def _sample(resources: ScoringResources, problems: list[ProblemRecord], seed: int,
            progress: Progress | None) -> list[list[str]]:  # fmt: skip
    """``reward.n_samples`` completions of the policy for each problem, with its source's stop sequences."""
    from wmtp_cli.data.templates import stop_sequences
    from wmtp_cli.decoding.generation import sample_completions

    reward = resources.recipe.reward
    per_source: dict[str, list[int]] = {}
    for i, problem in enumerate(problems):
        per_source.setdefault(problem["source"], []).append(i)
    out: list[list[str]] = [[] for _ in problems]
    for source, indices in per_source.items():
        texts = sample_completions(
            resources.policy(), resources.policy_tokenizer(), [problems[i]["prompt"] for i in indices],
            n=reward.n_samples, temperature=reward.temperature, top_p=reward.top_p,
            max_new_tokens=reward.max_new_tokens, batch_size=reward.generation_batch_size,
            stop=stop_sequences(source), seed=seed, progress=_labelled(progress, "sampling"),
            problem_keys=[problems[i]["task_id"] for i in indices],
        )  # fmt: skip
        for i, completions in zip(indices, texts, strict=True):
            out[i] = completions
    return out


def _reward(rows: list[dict], resources: ScoringResources, progress: Progress | None) -> None:
    """Fill each row's scored columns in place: the sequence reward from ``reward.source``, then the dense rewards."""
    reward = resources.recipe.reward
    source = reward_source(reward.source)
    prompts, completions = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    results = source.build(resources.recipe, resources)(
        prompts, completions, task_id=[r["task_id"] for r in rows], label=[r["label"] for r in rows],
        progress=_labelled(progress, source.progress_label),
    )  # fmt: skip
    for row, result in zip(rows, results, strict=True):
        row.update(reward=result.value, n_passed=result.n_passed, n_tests=result.n_tests, status=result.status,
                   dense_rewards=[])  # fmt: skip
    if reward.dense != "none":
        dense = dense_rewards(
            reward.dense, prompts, completions, [r["reward"] for r in rows], resources.reward_model(),
            resources.policy_tokenizer(), _labelled(progress, "dense rewards"),
        )  # fmt: skip
        for row, values in zip(rows, dense, strict=True):
            row["dense_rewards"] = values


def _labelled(progress: Progress | None, label: str):
    """``progress`` as a (done, total) callback under ``label``; None when there is no bar or no label."""
    if progress is None or not label:
        return None
    return lambda done, total: progress(label, done, total)


def score(recipe: Recipe, allow_code_execution: bool = False, progress: Progress | None = None) -> ScoreResult:
    """Score the recipe's data and write it under the run folder; see the module docstring."""
    from wmtp_cli.data.sources import load_problems

    _check_settings(recipe, allow_code_execution)
    run_dir = check_output(run_folder(recipe), RUN_FOLDER, kind="folder")
    check_output(scored_path(recipe), "the scored data (data.scored)" if recipe.data.scored else RUN_FOLDER, "folder")
    cache = run_dir / "score_cache"
    key = settings_key(recipe)
    if cache.exists() and (not (cache / "key").exists() or (cache / "key").read_text() != key):
        logger.warning("the recipe changed since %s was written: scoring again from the start", cache)
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache / "key", key)

    problems = load_problems(recipe.data, seed=recipe.run.seed).to_list()
    by_id = {p["task_id"]: p for p in problems}
    resources = ScoringResources(recipe, by_id)
    rows: list[dict] = []
    reused = 0
    n_chunks = math.ceil(len(problems) / CHUNK_PROBLEMS)
    for index in range(n_chunks):
        chunk_file = cache / f"chunk-{index:05d}.jsonl"
        if chunk_file.exists():
            rows += [json.loads(line) for line in chunk_file.read_text().splitlines()]
            reused += 1
        else:
            chunk = problems[index * CHUNK_PROBLEMS : (index + 1) * CHUNK_PROBLEMS]
            samples = None
            if recipe.reward.completions != "dataset":
                samples = _sample(resources, chunk, recipe.run.seed + index, progress)
            chunk_rows = [
                row for i, p in enumerate(chunk) for row in _completion_rows(p, samples[i] if samples else None,
                                                                             recipe.reward.completions)
            ]  # fmt: skip
            _reward(chunk_rows, resources, progress)
            atomic_write_text(chunk_file, "".join(json.dumps(r) + "\n" for r in chunk_rows))
            rows += chunk_rows
        if progress:
            progress("problems", min((index + 1) * CHUNK_PROBLEMS, len(problems)), len(problems))

    if not rows:
        raise UsageError("the data has no completions to score (no solutions, and no model samples asked for)")
    path = write_scored(rows, scored_path(recipe))
    summary = summarize(rows)
    isolation = resources.isolation_description()  # which sandbox ran the programs, when any ran
    record = {"isolation": isolation, "sources": summary_as_dict(summary)}
    atomic_write_text(run_dir / "score_summary.json", json.dumps(record, indent=2) + "\n")
    save_resolved_recipe(recipe, run_dir)
    return ScoreResult(path, run_dir, len(rows), summary, reused)


def summarize(rows: list[dict]) -> dict[str, SourceSummary]:
    """Count, mean reward, pass rate and a 10-bin histogram of the rewards for each source."""
    out = {}
    for source in sorted({r["source"] for r in rows}):
        rewards = [r["reward"] for r in rows if r["source"] == source]
        lo, hi = min(0.0, min(rewards)), max(1.0, max(rewards))
        histogram = [0] * 10
        for value in rewards:
            histogram[min(9, int((value - lo) / (hi - lo) * 10))] += 1
        executed = [r for r in rows if r["source"] == source and r["n_tests"] is not None]
        if executed:
            pass_rate = sum(r["status"] == "passed" for r in executed) / len(executed)
        else:
            pass_rate = sum(v == 1.0 for v in rewards) / len(rewards)
        out[source] = SourceSummary(len(rewards), sum(rewards) / len(rewards), pass_rate, histogram, (lo, hi))
    return out


def summary_as_dict(summary: dict[str, SourceSummary]) -> dict:
    return {source: asdict(s) for source, s in summary.items()}
