"""Recognise a data set's schema by its columns, and the pieces every source's normaliser shares.

The schemas themselves are declared by the sources that bring them (:mod:`wmtp_cli.data.sources`: the
columns that identify each, its default prompt template and how a row becomes a :class:`ProblemRecord`):
``codecontests``, ``humaneval``, ``mbpp`` and ``mbpp_sanitized``, ``tiny_code``, and ``prompt_completion``
(one completion a row; rows that share a task_id, or a prompt, are one problem).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable

from wmtp_cli.data.records import ProblemRecord, TestCases
from wmtp_cli.errors import UsageError


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


def detect_schema(columns: Iterable[str], where: str) -> str:
    """The registered schema whose identifying columns ``columns`` has (the first, in registration order);
    :class:`UsageError` naming them if none."""
    from wmtp_cli.data.sources import SCHEMAS

    found = set(columns)
    for schema in SCHEMAS.values():
        if schema.columns <= found:
            return schema.name
    expected = "; ".join(f"{s.described} ({', '.join(sorted(s.columns))})" for s in SCHEMAS.values())
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


def problem_record(
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
