"""What the executor is given and what it gives back."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from wmtp_cli.data.records import ProblemRecord, TestCases, program_for
from wmtp_cli.execution.inside.names import entry_points

STATUSES = ("passed", "failed", "error", "timeout", "killed", "no_marker")


@dataclass
class Job:
    """One program and its tests.

    ``timeout_s`` is the source's time limit per test (CodeContests' ``time_limit``, the record's
    ``time_limit_s``); the executor scales it by its ``time_limit_factor``, because those limits were
    set for C++ on the judges' machines. None: the executor's ``timeout_s``, unscaled.

    Assert tests run in a judge the program cannot reach (``inside/judge_side.py``). ``prefix`` is
    trusted text the program starts with (HumanEval's prompt): the judge runs it too, so the tests use
    its helper functions, not the program's versions. ``entry_points`` are the names the tests take
    from the program; None lets the judge infer them (names the tests read that neither the prefix,
    the setup nor the builtins define).
    """

    program: str
    tests: TestCases
    timeout_s: float | None = None
    prefix: str = ""
    entry_points: tuple[str, ...] | None = None

    @property
    def n_tests(self) -> int:
        return len(self.tests["statements"]) if self.tests["kind"] == "assert" else len(self.tests["inputs"])


def job_for(record: ProblemRecord, completion: str) -> Job:
    """The job that checks ``completion`` (text after the record's prompt) against its tests.

    The names the tests take from the program are those the record's own reference solution
    defines and the tests read (:func:`~wmtp_cli.execution.inside.names.entry_points`), so a
    program cannot stand in for a builtin the tests use unless the task asked for it (MBPP 126
    asks for a function called ``sum``).
    """
    tests, prefix = record["tests"], record["program_prefix"]
    entry = None
    if tests["kind"] == "assert" and record["solutions"]:
        entry = _entry_points(prefix, record["solutions"][0], tests["setup"], tuple(tests["statements"]))
    return Job(program_for(record, completion), tests, record.get("time_limit_s"), prefix, entry)


@functools.lru_cache(maxsize=4096)
def _entry_points(prefix: str, reference: str, setup: str, statements: tuple[str, ...]) -> tuple[str, ...] | None:
    """:func:`entry_points` once per problem, however many samples it has (parsing costs ~1 ms)."""
    found = entry_points(prefix, reference, setup, statements)
    return tuple(found) if found is not None else None


@dataclass
class ExecutionResult:
    """How a program did on its tests.

    ``status``: ``"passed"`` (every test passed and the run finished), ``"failed"`` (a test failed:
    an assertion, a wrong answer), ``"error"`` (the program raised or exited non-zero; a syntax
    error), ``"timeout"``, ``"killed"`` (memory, output or process limit; a signal), ``"no_marker"``
    (it exited with status 0 before the harness finished its tests: ``sys.exit`` or ``os._exit``
    before or during the tests). ``detail``: a short reason, e.g. the end of its stderr.
    ``n_passed`` counts the tests that passed, so ``fraction`` can be a graded reward.
    """

    passed: bool
    n_passed: int
    n_tests: int
    status: str
    detail: str
    seconds: float
    cpu_seconds: float = 0.0  # the program's own CPU time (its process, all its runs), for benchmarks

    @property
    def fraction(self) -> float:
        return self.n_passed / self.n_tests if self.n_tests else 0.0
