"""The executor on real benchmark data: every reference solution passes, mutated copies fail.

Reads ``../shared/data`` (beside the project; see its README) and skips, with the reason, where
it is absent, as on a user's machine. Records are built here with a few lines of local code, on
purpose independent of the data loaders in ``wmtp_cli.data``.

Figures (2-core AMD EPYC, bubblewrap): all 224 CodeContests references (2,239 tests) pass in
about 45 s; MBPP's references pass but for the two known bad ones (964 programs, about 25 s);
208 of 224 CodeContests mutants and 916 of 962 MBPP mutants fail (the rest change dead code or
code the tests do not reach). The whole file takes about three minutes there.
"""

from __future__ import annotations

import ast
import json
import time
import warnings
from pathlib import Path

import pytest

from wmtp_cli.data.records import assert_tests, stdio_tests
from wmtp_cli.execution import Executor, Job
from wmtp_cli.execution.inside.names import entry_points

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MBPP = DATA / "mbpp"
CODECONTESTS = DATA / "codecontests_sample" / "train.jsonl"
PYTHON3 = 3  # CodeContests' language id for Python 3
# split: (problems, task ids whose reference fails its own tests), as the data's README says
MBPP_SPLITS = {"test": (500, {367}), "train": (374, {927}), "validation": (90, set())}

needs_mbpp = pytest.mark.skipif(not MBPP.is_dir(), reason=f"MBPP data not found at {MBPP}")
needs_codecontests = pytest.mark.skipif(not CODECONTESTS.is_file(), reason=f"CodeContests sample not at {CODECONTESTS}")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def mbpp_jobs(split: str) -> list[tuple[int, Job]]:
    """MBPP: the program is ``code``; the tests ``test_list`` after ``test_setup_code``."""
    rows = read_jsonl(MBPP / f"{split}.jsonl")
    jobs = []
    for row in rows:
        tests = assert_tests(row["test_list"], row["test_setup_code"])
        names = entry_points("", row["code"], tests["setup"], tests["statements"])  # the reference's, as job_for
        jobs.append((row["task_id"], Job(row["code"], tests, entry_points=None if names is None else tuple(names))))
    return jobs


def codecontests_jobs() -> list[tuple[str, Job]]:
    """CodeContests: the first Python 3 solution, tests public + private + generated, its time limit."""
    jobs = []
    for row in read_jsonl(CODECONTESTS):
        solutions = row["solutions"]
        program = next(
            s for lang, s in zip(solutions["language"], solutions["solution"], strict=True) if lang == PYTHON3
        )
        inputs, outputs = [], []
        for key in ("public_tests", "private_tests", "generated_tests"):
            inputs += row[key]["input"]
            outputs += row[key]["output"]
        limit = row["time_limit"]
        seconds = limit["seconds"] + limit["nanos"] / 1e9 if limit else None
        jobs.append((row["name"], Job(program, stdio_tests(inputs, outputs), seconds or None)))
    return jobs


_FLIPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}


def mutate(program: str) -> str:
    """A copy with one small change: the first arithmetic or comparison operator flipped, else the
    first integer constant plus one, else the first string constant changed, else the first
    ``return x`` made ``return None``. The change is checked to be real (a different syntax tree)."""
    tree = _parse(program)
    nodes = sorted((n for n in ast.walk(tree) if hasattr(n, "lineno")), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _FLIPS:
            node.op = _FLIPS[type(node.op)]()
            break
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIPS:
            node.ops[0] = _FLIPS[type(node.ops[0])]()
            break
    else:
        _change_a_constant(nodes)
    mutated = ast.unparse(tree)
    assert ast.dump(_parse(mutated)) != ast.dump(_parse(program)), "the mutation changed nothing"
    return mutated


def _parse(program: str) -> ast.Module:
    with warnings.catch_warnings():  # MBPP's regular expressions have invalid escapes like "\d"
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        return ast.parse(program)


def _change_a_constant(nodes: list[ast.AST]) -> None:
    for kind, change in ((int, lambda v: v + 1), (str, lambda v: v + "x")):
        for node in nodes:
            if isinstance(node, ast.Constant) and type(node.value) is kind:
                node.value = change(node.value)
                return
    for node in nodes:
        if isinstance(node, ast.Return) and node.value is not None:
            node.value = ast.Constant(None)
            return
    raise AssertionError("nothing to mutate")


def report(label: str, results, started: float) -> None:
    passed = sum(r.passed for r in results)
    elapsed = time.monotonic() - started
    print(f"\n{label}: {passed}/{len(results)} passed in {elapsed:.1f} s ({len(results) / elapsed:.1f} programs/s)")


@needs_codecontests
def test_codecontests_references_all_pass():
    jobs = codecontests_jobs()
    assert len(jobs) == 224 and sum(job.n_tests for _, job in jobs) == 2239
    started = time.monotonic()
    # Generous limits: the references are correct, and a busy machine's speed must not decide this test.
    results = Executor(time_limit_factor=30.0).run([job for _, job in jobs])
    report("CodeContests references", results, started)
    failures = {name: f"{r.status}: {r.detail}" for (name, _), r in zip(jobs, results, strict=True) if not r.passed}
    assert failures == {}


@needs_codecontests
def test_codecontests_mutants_fail():
    # Every other problem: a looping mutant costs its whole time limit, and half the sample says as much.
    jobs = codecontests_jobs()[::2]
    mutants = [Job(mutate(job.program), job.tests, job.timeout_s) for _, job in jobs]
    started = time.monotonic()
    # A mutant only has to fail, so the judges' own limit keeps the looping ones short.
    results = Executor(time_limit_factor=1.0).run(mutants)
    report("CodeContests mutants", results, started)
    failed = sum(not r.passed for r in results)
    assert failed >= 0.85 * len(mutants), f"only {failed}/{len(mutants)} mutants failed"


@needs_mbpp
@pytest.mark.parametrize("split", sorted(MBPP_SPLITS))
def test_mbpp_references_pass_but_the_known_bad_ones(split):
    size, known_bad = MBPP_SPLITS[split]
    jobs = mbpp_jobs(split)
    assert len(jobs) == size
    started = time.monotonic()
    results = Executor(timeout_s=120.0).run([job for _, job in jobs])  # task 123 alone takes ~6 s when idle
    report(f"MBPP {split} references", results, started)
    assert {task for (task, _), r in zip(jobs, results, strict=True) if not r.passed} == known_bad
    assert all(r.fraction == 1.0 for r in results if r.passed)


@needs_mbpp
def test_mbpp_mutants_fail():
    jobs = [job for split in sorted(MBPP_SPLITS) for task, job in mbpp_jobs(split) if task not in MBPP_SPLITS[split][1]]
    mutants = [Job(mutate(job.program), job.tests) for job in jobs]
    started = time.monotonic()
    results = Executor(timeout_s=3.0).run(mutants)
    report("MBPP mutants", results, started)
    failed = sum(not r.passed for r in results)
    scores_below_one = sum(r.fraction < 1 for r in results)
    assert failed == scores_below_one  # a failing run never scores a full fraction
    assert failed >= 0.9 * len(mutants), f"only {failed}/{len(mutants)} mutants failed"
