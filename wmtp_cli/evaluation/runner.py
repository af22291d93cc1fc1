"""What ``wmtp eval`` does: resolve the settings (recipe, then flags), get samples, score them, write.

Samples come from ``--samples`` (a file) or from the model (``--model``, else the recipe's
``model.path``), sampled with each benchmark's stop sequences. Settings: flags win over the recipe's
``eval`` section, which wins over its defaults. A model's samples are kept per problem as they are
generated (:mod:`wmtp_cli.evaluation.samples_log`), so the same command run again after an interruption
generates only the problems that were missing, and gives the report an uninterrupted run gives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wmtp_cli.config import EvalConfig, ModelConfig, check_values
from wmtp_cli.errors import UsageError
from wmtp_cli.evaluation.harness import (
    EvalReport,
    evaluate,
    group_samples,
    per_problem_path,
    read_samples,
    write_report,
)
from wmtp_cli.evaluation.samples_log import SamplesLog, samples_log_path
from wmtp_cli.io import check_output

logger = logging.getLogger(__name__)


@dataclass
class EvalRequest:
    benchmarks: list[str]
    k: list[int]
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    timeout_s: float
    batch_size: int
    model: ModelConfig | None
    samples: Path | None
    data: str | None
    split: str | None
    limit: int | None
    output_dir: Path
    output: Path | None
    seed: int = 0
    subsets: dict[str, str | None] = field(default_factory=dict)  # benchmark -> data.subset
    speculative: bool = False
    compile: bool = False  # greedy decoding one prompt at a time, torch.compile over a static cache
    head_metrics: bool = False
    isolation: str = "auto"  # the sandbox: --sandbox, else the recipe's execution.isolation
    model_from_flag: bool = False  # --model named it (else the recipe's model.path): for error messages

    @classmethod
    def build(cls, recipe=None, overrides: Sequence[str] = (), **flags) -> EvalRequest:
        """Flags (None = not given) over the recipe's eval section (or its defaults)."""
        settings, model, output_dir, seed, isolation = EvalConfig(), None, Path("runs") / "eval", 0, "auto"
        recipe_subset: dict[str, str | None] = {}
        if recipe is not None:
            from wmtp_cli.config import load_recipe
            from wmtp_cli.runs import run_folder

            resolved = load_recipe(recipe, overrides, need=("eval",))
            settings, model, seed = resolved.eval, resolved.model, resolved.run.seed
            isolation = resolved.execution.isolation
            output_dir = run_folder(resolved) / "eval"
            # the recipe's data.subset for the benchmark its data comes from (e.g. tiny-code's generator options)
            recipe_subset = {resolved.data.source: resolved.data.subset}
        elif overrides:
            raise UsageError("section.key=value overrides need a recipe; without one, use the flags")
        _check_flags(flags)
        if flags.get("model"):
            # without a recipe, the folder's own dtype (what it was saved in)
            model = ModelConfig(path=flags["model"], dtype=model.dtype if model else "auto")
        samples = flags.get("samples")
        benchmarks = list(flags.get("benchmarks") or settings.benchmarks)
        subsets = {b: flags.get("subset") or recipe_subset.get(b) for b in benchmarks}
        n = flags.get("n") or settings.n_samples
        k = sorted(set(flags.get("k") or settings.k))
        request = cls(
            benchmarks=benchmarks, k=k, n=n,
            temperature=settings.temperature if flags.get("temperature") is None else flags["temperature"],
            top_p=flags.get("top_p") or settings.top_p,
            max_new_tokens=flags.get("max_new_tokens") or settings.max_new_tokens,
            batch_size=flags.get("batch_size") or settings.batch_size,
            timeout_s=flags.get("timeout") or settings.timeout_s, model=model, samples=samples,
            data=flags.get("data"), split=flags.get("split"), subsets=subsets, limit=flags.get("limit"),
            output_dir=output_dir,
            output=flags.get("output"), seed=seed, speculative=bool(flags.get("speculative") or settings.speculative),
            compile=bool(flags.get("compile") or settings.compile),
            head_metrics=bool(flags.get("head_metrics") or settings.head_metrics),
            model_from_flag=bool(flags.get("model")), isolation=flags.get("sandbox") or isolation,
        )  # fmt: skip
        request.check()
        return request

    @classmethod
    def for_model(
        cls, recipe, model_dir: Path, output_dir: Path, output: Path | None = None, head_metrics: bool = False
    ) -> EvalRequest:
        """The recipe's eval section applied to the model folder ``model_dir`` (a fine-tuned ``final/``, say):
        its benchmarks (each's default split; the recipe's data.subset for the benchmark its data comes from),
        sampled with the recipe's seed, in its sandbox."""
        e = recipe.eval
        request = cls(
            benchmarks=list(e.benchmarks), k=sorted(set(e.k)), n=e.n_samples, temperature=e.temperature,
            top_p=e.top_p, max_new_tokens=e.max_new_tokens, timeout_s=e.timeout_s, batch_size=e.batch_size,
            model=ModelConfig(path=str(model_dir), dtype=recipe.model.dtype if recipe.model else "fp32"),
            samples=None, data=None, split=None, limit=None, output_dir=output_dir, output=output,
            subsets={recipe.data.source: recipe.data.subset}, seed=recipe.run.seed, head_metrics=head_metrics,
            isolation=recipe.execution.isolation, speculative=e.speculative, compile=e.compile,
        )  # fmt: skip
        request.check()
        return request

    def check(self) -> None:
        """Refuse settings that cannot work, and outputs that cannot be written, before any work."""
        if self.samples is None and self.model is None:
            raise UsageError("nothing to evaluate: give --samples FILE, or --model DIR (or a recipe with model.path)")
        if self.output is not None and len(self.benchmarks) > 1:
            raise UsageError("--output names one file; evaluate one --benchmark at a time with it")
        if self.data is not None and len(self.benchmarks) > 1:
            raise UsageError("--data is one benchmark's files; evaluate one --benchmark at a time with it")
        if self.samples is None and max(self.k) > self.n:
            raise UsageError(f"pass@{max(self.k)} needs --n {max(self.k)} or more samples per problem (got {self.n})")
        if self.speculative and (self.samples is not None or self.temperature > 0):
            raise UsageError("--speculative is greedy decoding from a model: use --temperature 0 and no --samples")
        if self.compile and (self.samples is not None or self.temperature > 0):
            raise UsageError("--compile is greedy decoding from a model: use --temperature 0 and no --samples")
        if self.head_metrics and self.model is None:
            raise UsageError("--head-metrics needs a model (--model DIR or a recipe with model.path)")
        if self.samples is None and self.n > 1 and self.temperature == 0:
            raise UsageError("greedy decoding (temperature 0) gives n identical samples: set --temperature > 0")
        for benchmark in self.benchmarks:
            summary, per_problem = self.outputs(benchmark)
            check_output(summary, "the summary --output" if self.output else "the summary")
            check_output(per_problem, "the per-problem results")
            if self.samples is None:
                check_output(samples_log_path(summary), "the samples file")

    def outputs(self, benchmark: str) -> tuple[Path, Path]:
        """Where a benchmark's summary goes, and its per-problem results beside it."""
        summary = self.output or self.output_dir / f"{benchmark}.json"
        return summary, per_problem_path(summary)

    def settings(self, benchmark: str) -> dict:
        return {
            "benchmark": benchmark, "k": self.k, "n": self.n, "temperature": self.temperature, "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens, "timeout_s": self.timeout_s, "split": self.split,
            "data": self.data, "subset": self.subsets.get(benchmark), "limit": self.limit, "seed": self.seed,
            "model": self.model.path if self.model and self.samples is None else None,
            "samples": str(self.samples) if self.samples else None, "speculative": self.speculative,
            "compile": self.compile,
            "isolation": self.isolation,
        }  # fmt: skip

    def generation_settings(self, benchmark: str) -> dict:
        """What a model's completions depend on: an interrupted run's samples are taken only if these are equal.
        Not the batch size (each sample has its own seed); a model folder is also known by its files' sizes
        and times, so a model trained again in place is another model."""
        model = self.model
        return {
            "benchmark": benchmark, "data": self.data, "split": self.split, "subset": self.subsets.get(benchmark),
            "limit": self.limit, "model": model.path, "dtype": model.dtype, "n_future": model.n_future,
            "model_files": _model_files(model.path), "n": self.n, "temperature": self.temperature,
            "top_p": self.top_p, "max_new_tokens": self.max_new_tokens, "seed": self.seed,
            "speculative": self.speculative, "compile": self.compile,
        }  # fmt: skip


def _model_files(path: str) -> list[list] | None:
    """[name, size, modification time] of each file in a local model folder (None for a hub id)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    return sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in folder.iterdir() if f.is_file())


# Flags that set an eval-section key, by key: checked as the recipe's value would be.
_FLAG_OF_KEY = {
    "n_samples": ("n", "--n"), "k": ("k", "--k"), "temperature": ("temperature", "--temperature"),
    "top_p": ("top_p", "--top-p"), "max_new_tokens": ("max_new_tokens", "--max-new-tokens"),
    "batch_size": ("batch_size", "--batch-size"), "timeout_s": ("timeout", "--timeout"),
}  # fmt: skip


def _check_flags(flags: dict) -> None:
    given = {key: flags[flag] for key, (flag, _) in _FLAG_OF_KEY.items() if flags.get(flag) is not None}
    check_values("eval", given, names={key: name for key, (_, name) in _FLAG_OF_KEY.items()})


def run_eval(request: EvalRequest, allow_code_execution: bool = False, progress=None) -> list[tuple[EvalReport, Path]]:
    """Evaluate each requested benchmark; returns each report with the path of its summary."""
    from wmtp_cli.execution import Executor, require_code_execution

    require_code_execution(allow_code_execution, recipe_key=None)  # eval's consent is the flag alone
    rows = read_samples(request.samples) if request.samples is not None else None  # a bad file fails before work
    executor = Executor(timeout_s=request.timeout_s, isolation=request.isolation)  # refuses (fails closed) here
    executor.start()  # the sandboxes start while the problems and the model load
    policy = _Policy(request, progress)
    if rows is None:  # a model folder that is not one is refused before a samples file is started
        from wmtp_cli.model.loading import check_model_source

        check_model_source(request.model.path, "--model" if request.model_from_flag else "model.path")
    with executor:
        return [_run_benchmark(request, name, rows, executor, policy, progress) for name in request.benchmarks]


def _run_benchmark(request: EvalRequest, benchmark: str, rows, executor, policy: _Policy, progress):
    """One benchmark's report, written; with a model on an accelerator, each problem's tests start as soon as its
    samples exist."""
    from wmtp_cli.evaluation.benchmarks import load_benchmark
    from wmtp_cli.execution import job_for

    problems = load_benchmark(benchmark, request.data, request.split, request.limit, request.subsets.get(benchmark))
    log, started = None, {}
    if rows is not None:
        samples, decoding = group_samples(rows, problems), None
    else:
        by_id = {p["task_id"]: p for p in problems}

        def start_tests(task_id: str, completions: list[str]) -> None:
            # Only beside a model on an accelerator: on the CPU, programs and model share the cores, and measured
            # on 2 cores the two slowed each other down more than running them one after the other.
            if not policy.on_accelerator:
                return
            for completion in dict.fromkeys(completions):  # a repeated completion runs once (run_repeats_once)
                started[(task_id, completion)] = executor.submit(job_for(by_id[task_id], completion))

        log = SamplesLog.open(
            samples_log_path(request.outputs(benchmark)[0]), request.generation_settings(benchmark),
            [p["task_id"] for p in problems],
        )  # fmt: skip
        samples, decoding = _generate(request, benchmark, problems, policy, progress, log, start_tests)
    callback = (lambda done, total: progress(f"{benchmark} tests", done, total)) if progress else None
    settings = {**request.settings(benchmark), "isolation": executor.isolation_description}
    report = evaluate(
        benchmark, problems, samples, executor, request.k, settings, callback,
        run_repeats_once=request.samples is None, started=started,
    )  # fmt: skip
    report.decoding = decoding
    if request.head_metrics:
        report.head_metrics = _head_metrics(policy.model, policy.tokenizer, problems, progress)
    output, _ = request.outputs(benchmark)
    write_report(report, output)
    if log is not None:
        log.remove()  # the per-problem results hold every completion now
    return report, output


class _Policy:
    """The request's model and tokenizer, loaded on first use (a run that scores given samples never loads them)."""

    def __init__(self, request: EvalRequest, progress=None):
        self._request = request
        self._progress = progress
        self._loaded = None

    def load(self):
        if self._loaded is None:
            from wmtp_cli.model.loading import load_model_and_tokenizer

            if self._progress:
                self._progress("loading model", 0, 1)
            what = "--model" if self._request.model_from_flag else "model.path"
            self._loaded = load_model_and_tokenizer(self._request.model, what=what)
            if self._progress:
                self._progress("loading model", 1, 1)
        return self._loaded

    @property
    def model(self):
        return self.load().model

    @property
    def on_accelerator(self) -> bool:
        """Whether the model is loaded, and not on the CPU."""
        return self._loaded is not None and next(self._loaded.model.parameters()).device.type != "cpu"

    @property
    def tokenizer(self):
        return self.load().tokenizer


def _generate(request: EvalRequest, benchmark: str, problems, policy: _Policy, progress, log: SamplesLog, on_samples):
    """The model's completions for each problem, by task id, and the decoding statistics (speculative only).

    ``on_samples(task_id, completions)`` is called for each problem as soon as its completions exist (those of
    an interrupted run first), so that its tests can run while the model generates the rest.

    Problems already in ``log`` (an interrupted run's) are taken from it; the rest are generated and
    appended to it as each problem's last sample ends (each sample has its own seed, so a problem's
    samples do not depend on which others were generated beside it).
    """
    from wmtp_cli.data.templates import stop_sequences
    from wmtp_cli.decoding.generation import SpeculativeStats, sample_completions, speculative_completions

    rows, task_ids = list(log.rows), [p["task_id"] for p in problems]
    resumed = f"{len(rows)} from {log.path.name}" if rows else ""
    if rows:
        logger.info("took the samples of %d of %d problems from %s", len(rows), len(problems), log.path)
    if len(rows) < len(problems):
        policy.load()  # before the sampling bar starts, so that each stage's time is its own
    if progress:
        progress("sampling", len(rows), len(problems), resumed)
    sampling = (lambda done, total: progress("sampling", done, total, resumed)) if progress else None

    def keep(new_rows: list[dict]) -> None:
        log.append(new_rows)
        rows.extend(new_rows)
        for row in new_rows:
            on_samples(row["task_id"], row["completions"])

    for row in rows:
        on_samples(row["task_id"], row["completions"])

    def keep_prompt(index: int, text: str, own: SpeculativeStats) -> None:
        keep([{"task_id": task_ids[index], "completions": [text], "decoding": asdict(own)}])

    def keep_problem(index: int, completions: list[str]) -> None:
        keep([{"task_id": task_ids[index], "completions": completions}])

    prompts, stop = [p["prompt"] for p in problems], stop_sequences(benchmark)
    one_at_a_time = request.speculative or request.compile  # greedy, a prompt at a time, with decoding statistics
    stats = SpeculativeStats() if one_at_a_time else None
    if one_at_a_time:
        for row in rows:
            stats.add(SpeculativeStats(**row["decoding"]))
    have = {row["task_id"] for row in rows}
    skip = [i for i, task_id in enumerate(task_ids) if task_id in have]
    if len(rows) < len(problems) and one_at_a_time:
        _, new = speculative_completions(
            policy.model, policy.tokenizer, prompts, request.max_new_tokens, stop, sampling, skip=skip,
            on_prompt=keep_prompt, n_draft=None if request.speculative else 0, compile=request.compile,
        )  # fmt: skip
        stats.add(new)
    elif len(rows) < len(problems):
        sample_completions(
            policy.model, policy.tokenizer, prompts, n=request.n, temperature=request.temperature,
            top_p=request.top_p, max_new_tokens=request.max_new_tokens, batch_size=request.batch_size, stop=stop,
            seed=request.seed, progress=sampling, skip=skip, on_problem=keep_problem, problem_keys=task_ids,
        )  # fmt: skip
    samples = {row["task_id"]: row["completions"] for row in rows}
    return samples, stats.as_dict() if stats is not None else None


def _head_metrics(model, tokenizer, problems, progress) -> list[dict]:
    """Per-head metrics on each problem's first reference solution."""
    from dataclasses import asdict

    from wmtp_cli.evaluation.head_metrics import head_metrics

    with_reference = [p for p in problems if p["solutions"]]
    if not with_reference:
        raise UsageError("--head-metrics needs reference solutions, and this benchmark split has none")
    callback = (lambda done, total: progress("head metrics", done, total)) if progress else None
    metrics = head_metrics(
        model, tokenizer, [p["prompt"] for p in with_reference], [p["solutions"][0] for p in with_reference],
        progress=callback,
    )  # fmt: skip
    return [asdict(m) for m in metrics]
