"""The one record every data source is normalised to (DESIGN.md section 4).

A record is a plain dict (rows of a ``datasets.Dataset``), typed here for readers and checkers:

- ``task_id``: unique within its source, e.g. ``"mbpp/11"``, ``"HumanEval/0"``.
- ``source``: ``"mbpp"``, ``"humaneval"``, ``"codecontests"``, ``"local"`` or a hub name.
- ``prompt``: the text the model is conditioned on (the source's prompt template applied).
- ``solutions`` / ``incorrect_solutions``: completions, the text that follows ``prompt``.
- ``program_prefix``: text put before a completion to make the program that runs (HumanEval's
  function signature and docstring; empty where the completion is a whole program).
- ``tests``: :class:`TestCases`.
- ``time_limit_s``: the source's time limit per test, or ``None`` for the executor's default.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class TestCases(TypedDict):
    """Either assert-style tests (MBPP, HumanEval) or stdin/stdout pairs (CodeContests).

    ``kind == "assert"``: ``setup`` runs first (MBPP's ``test_setup_code``), then the program, then
    each of ``statements`` in turn (one test each). ``kind == "stdio"``: the program runs once per
    pair of ``inputs[i]`` (stdin) and ``outputs[i]`` (expected stdout, compared line by line after
    stripping trailing white space). The other kind's fields are empty.
    """

    kind: Literal["assert", "stdio"]
    setup: str
    statements: list[str]
    inputs: list[str]
    outputs: list[str]


class ProblemRecord(TypedDict):
    task_id: str
    source: str
    prompt: str
    solutions: list[str]
    incorrect_solutions: list[str]
    program_prefix: str
    tests: TestCases
    time_limit_s: float | None


def assert_tests(statements: list[str], setup: str = "") -> TestCases:
    return {"kind": "assert", "setup": setup, "statements": list(statements), "inputs": [], "outputs": []}


def stdio_tests(inputs: list[str], outputs: list[str]) -> TestCases:
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} test inputs but {len(outputs)} expected outputs")
    return {"kind": "stdio", "setup": "", "statements": [], "inputs": list(inputs), "outputs": list(outputs)}


def program_for(record: ProblemRecord, completion: str) -> str:
    """The program that runs for ``completion`` of ``record``."""
    return record["program_prefix"] + completion
