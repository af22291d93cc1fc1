"""CodeContests (``deepmind/code_contests``): a stdin/stdout program per problem, Python 3 solutions only."""

from __future__ import annotations

import logging
from typing import Any

from wmtp_cli.data.records import ProblemRecord, stdio_tests
from wmtp_cli.data.schemas import problem_record
from wmtp_cli.data.sources.registry import Schema, Source, register_source
from wmtp_cli.data.templates import render_prompt

logger = logging.getLogger(__name__)

PYTHON3 = 3
"""CodeContests' language id for Python 3 (1 is Python 2, whose programs do not run under Python 3)."""

TEMPLATE = (
    "Write a Python 3 program that solves the problem below. The program reads its input from standard input "
    "and writes its answer to standard output.\n\n{description}\n\nPython 3 program:\n"
)


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
    return problem_record(
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


def stdin_only(raw, num_proc: int):
    """Drop CodeContests problems that read or write named files: their tests are run on stdin/stdout."""
    from wmtp_cli.data.sources.loading import processes

    if not {"input_file", "output_file"} <= set(raw.column_names):
        return raw
    kept = raw.filter(
        lambda i, o: not i and not o, input_columns=["input_file", "output_file"], num_proc=processes(num_proc, raw)
    )
    if len(kept) < len(raw):
        logger.info("skipped %d CodeContests problems that use input or output files", len(raw) - len(kept))
    return kept


CODECONTESTS = Schema(
    "codecontests", "CodeContests", frozenset({"name", "description", "public_tests", "solutions"}), TEMPLATE,
    ("description", "name"), normalise_codecontests, prepare=stdin_only,
)  # fmt: skip

register_source(Source(
    "codecontests", "CodeContests: data.path = files in its hub schema, or null = the hub", (CODECONTESTS,),
    benchmark=True, default_split="test", stop_sequences=("\nWrite a Python 3 program",),
    hub=("deepmind/code_contests", None),
))  # fmt: skip
