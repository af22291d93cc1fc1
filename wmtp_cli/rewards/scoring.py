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
from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_directory, atomic_write_text, check_output
from wmtp_cli.progress import Progress
from wmtp_cli.runs import RUN_FOLDER, run_folder, scored_path, settings_key

logger = logging.getLogger(__name__)

CHUNK_PROBLEMS = 32
SCORED_COLUMNS = (
    "task_id", "source", "prompt", "completion", "reward", "origin", "label",
    "n_passed", "n_tests", "status", "dense_rewards",
)  # fmt: skip


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
    if reward.source == "labels" and reward.completions != "dataset":
        raise UsageError(
            "reward.source 'labels' scores only the data set's own solutions (model samples have no label): "
            "set reward.completions=dataset, or use execution or reward_model"
        )
    if (reward.completions != "dataset" or reward.dense != "none") and recipe.model is None:
        raise UsageError(
            f"reward.completions={reward.completions} / reward.dense={reward.dense} need model.path "
            "(the policy that samples, and whose tokens dense rewards align to)"
        )
    if reward.source == "execution":
        from wmtp_cli.execution import require_code_execution, resolve_isolation

        require_code_execution(allow_code_execution or reward.allow_code_execution)
        resolve_isolation(recipe.execution.isolation)  # no working sandbox: refuse now, not after loading data


def _completion_rows(problem: ProblemRecord, samples: list[str] | None, completions: str) -> list[dict]:
    rows = []
    if completions in ("dataset", "both"):
        rows += [{"completion": c, "origin": "solution", "label": 1} for c in problem["solutions"]]
        rows += [{"completion": c, "origin": "incorrect_solution", "label": 0} for c in problem["incorrect_solutions"]]
    if completions in ("model", "both"):
        rows += [{"completion": c, "origin": "sample", "label": None} for c in samples or []]
    for row in rows:
        row.update(task_id=problem["task_id"], source=problem["source"], prompt=problem["prompt"])
    return rows


class _Scorer:
    """Holds what is expensive to build (policy, reward model, sandbox) across chunks."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.reward = recipe.reward
        self._policy = None
        self._policy_tokenizer = None
        self._reward_model = None
        self._executor = None

    def policy_tokenizer(self):
        if self._policy_tokenizer is None:
            from wmtp_cli.model.loading import load_tokenizer

            self._policy_tokenizer = load_tokenizer(self.recipe.model.path, need_eos=False)
        return self._policy_tokenizer

    def policy(self):
        if self._policy is None:
            from wmtp_cli.model.loading import load_causal_lm

            self._policy = load_causal_lm(self.recipe.model)
        return self._policy

    def reward_model(self):
        if self._reward_model is None:
            from wmtp_cli.rewards.reward_model import RewardModel

            self._reward_model = RewardModel(
                self.reward.reward_model, batch_size=self.reward.batch_size, attention=self.reward.dense == "attention"
            )
        return self._reward_model

    def executor(self):
        if self._executor is None:
            from wmtp_cli.execution import Executor

            self._executor = Executor(
                timeout_s=self.reward.timeout_s,
                memory_mb=self.reward.memory_mb,
                workers=self.reward.workers,
                isolation=self.recipe.execution.isolation,
            )
        return self._executor

    def isolation_description(self) -> str | None:
        """The sandbox that ran the programs (None when no program ran)."""
        return self._executor.isolation_description if self._executor is not None else None

    def samples(self, problems: list[ProblemRecord], seed: int, progress: Progress | None) -> list[list[str]]:
        from wmtp_cli.data.templates import stop_sequences
        from wmtp_cli.decoding.generation import sample_completions

        reward = self.reward
        per_source: dict[str, list[int]] = {}
        for i, problem in enumerate(problems):
            per_source.setdefault(problem["source"], []).append(i)
        out: list[list[str]] = [[] for _ in problems]
        for source, indices in per_source.items():
            texts = sample_completions(
                self.policy(), self.policy_tokenizer(), [problems[i]["prompt"] for i in indices],
                n=reward.n_samples, temperature=reward.temperature, top_p=reward.top_p,
                max_new_tokens=reward.max_new_tokens, batch_size=reward.generation_batch_size,
                stop=stop_sequences(source), seed=seed,
                progress=(lambda done, total: progress("sampling", done, total)) if progress else None,
            )  # fmt: skip
            for i, completions in zip(indices, texts, strict=True):
                out[i] = completions
        return out

    def rewards(self, rows: list[dict], problems: dict[str, ProblemRecord], progress: Progress | None) -> None:
        """Fill ``reward``, ``n_passed``, ``n_tests``, ``status`` and ``dense_rewards`` of ``rows`` in place."""
        source = self.reward.source
        for row in rows:
            row.update(n_passed=None, n_tests=None, status="", dense_rewards=[])
        if source == "labels":
            for row in rows:
                row["reward"] = float(row["label"])
        elif source == "execution":
            from wmtp_cli.execution import job_for

            jobs = [job_for(problems[row["task_id"]], row["completion"]) for row in rows]
            callback = (lambda done, total: progress("executing", done, total)) if progress else None
            for row, result in zip(rows, self.executor().run(jobs, progress=callback), strict=True):
                passed_all = result.passed
                row["reward"] = float(passed_all) if self.reward.all_or_nothing else (
                    1.0 if passed_all else result.n_passed / max(result.n_tests, 1)
                )  # fmt: skip
                row.update(n_passed=result.n_passed, n_tests=result.n_tests, status=result.status)
        else:
            callback = (lambda done, total: progress("reward model", done, total)) if progress else None
            scores = self.reward_model().score([r["prompt"] for r in rows], [r["completion"] for r in rows], callback)
            for row, value in zip(rows, scores, strict=True):
                row["reward"] = float(value)
        if self.reward.dense != "none":
            model, tokenizer = self.reward_model(), self.policy_tokenizer()
            for done, row in enumerate(rows, 1):
                if self.reward.dense == "prefix":
                    row["dense_rewards"] = model.prefix_rewards(row["prompt"], row["completion"], tokenizer)
                else:
                    row["dense_rewards"] = model.attention_rewards(
                        row["prompt"], row["completion"], row["reward"], tokenizer
                    )
                if progress:
                    progress("dense rewards", done, len(rows))


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
    scorer = _Scorer(recipe)
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
                samples = scorer.samples(chunk, recipe.run.seed + index, progress)
            chunk_rows = [
                row for i, p in enumerate(chunk) for row in _completion_rows(p, samples[i] if samples else None,
                                                                             recipe.reward.completions)
            ]  # fmt: skip
            scorer.rewards(chunk_rows, by_id, progress)
            atomic_write_text(chunk_file, "".join(json.dumps(r) + "\n" for r in chunk_rows))
            rows += chunk_rows
        if progress:
            progress("problems", min((index + 1) * CHUNK_PROBLEMS, len(problems)), len(problems))

    if not rows:
        raise UsageError("the data has no completions to score (no solutions, and no model samples asked for)")
    path = _write_scored(rows, scored_path(recipe))
    summary = summarize(rows)
    isolation = scorer.isolation_description()  # which sandbox ran the programs, when any ran
    record = {"isolation": isolation, "sources": summary_as_dict(summary)}
    atomic_write_text(run_dir / "score_summary.json", json.dumps(record, indent=2) + "\n")
    save_resolved_recipe(recipe, run_dir)
    return ScoreResult(path, run_dir, len(rows), summary, reused)


def _write_scored(rows: list[dict], out: Path) -> Path:
    import datasets

    features = datasets.Features({
        "task_id": datasets.Value("string"), "source": datasets.Value("string"),
        "prompt": datasets.Value("string"), "completion": datasets.Value("string"),
        "reward": datasets.Value("float64"), "origin": datasets.Value("string"),
        "label": datasets.Value("int64"), "n_passed": datasets.Value("int64"), "n_tests": datasets.Value("int64"),
        "status": datasets.Value("string"), "dense_rewards": datasets.Sequence(datasets.Value("float64")),
    })  # fmt: skip
    table = datasets.Dataset.from_list([{k: row[k] for k in SCORED_COLUMNS} for row in rows], features=features)
    with atomic_directory(out, force=True) as tmp:
        table.save_to_disk(str(tmp))
    return out


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
