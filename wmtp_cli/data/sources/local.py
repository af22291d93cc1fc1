"""``local``: JSON / JSONL / Parquet files (``data.path``) in any registered schema, or one completion a row.

The ``prompt_completion`` schema: one completion a row (prompt, completion; optional task_id, reward or
label, tests). Rows that share a task_id (or, without one, a prompt) are one problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wmtp_cli.data.records import ProblemRecord, TestCases, assert_tests, stdio_tests
from wmtp_cli.data.schemas import problem_record
from wmtp_cli.data.sources.registry import Schema, Source, register_source
from wmtp_cli.data.templates import render_prompt
from wmtp_cli.errors import UsageError


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
        problem_record(
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


PROMPT_COMPLETION = Schema(
    "prompt_completion", "prompt/completion", frozenset({"prompt", "completion"}), "{prompt}", (), None,
    group=group_prompt_completion,
)  # fmt: skip

register_source(Source(
    "local", "local files (data.path: a JSON / JSONL / Parquet file or a folder of them) in any schema",
    (PROMPT_COMPLETION,), default_split="train", needs_path=True, any_schema=True,
))  # fmt: skip
