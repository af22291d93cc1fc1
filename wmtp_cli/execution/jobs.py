"""What the executor is given and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass

from wmtp_cli.data.records import ProblemRecord, TestCases, program_for

STATUSES = ("passed", "failed", "error", "timeout", "killed", "no_marker")


@dataclass
class Job:
    """One program and its tests.

    ``timeout_s`` is the source's time limit per test (CodeContests' ``time_limit``, the record's
    ``time_limit_s``); the executor scales it by its ``time_limit_factor``, because those limits were
    set for C++ on the judges' machines. None: the executor's ``timeout_s``, unscaled.
    """

    program: str
    tests: TestCases
    timeout_s: float | None = None

    @property
    def n_tests(self) -> int:
        return len(self.tests["statements"]) if self.tests["kind"] == "assert" else len(self.tests["inputs"])


def job_for(record: ProblemRecord, completion: str) -> Job:
    """The job that checks ``completion`` (text after the record's prompt) against its tests."""
    return Job(program_for(record, completion), record["tests"], record.get("time_limit_s"))


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

    @property
    def fraction(self) -> float:
        return self.n_passed / self.n_tests if self.n_tests else 0.0
