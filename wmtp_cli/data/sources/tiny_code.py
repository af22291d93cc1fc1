"""tiny-code: the procedural benchmark the project generates (:mod:`wmtp_cli.data.tiny_code`), no files."""

from __future__ import annotations

from typing import Any

from wmtp_cli.data.records import ProblemRecord, assert_tests
from wmtp_cli.data.schemas import problem_record
from wmtp_cli.data.sources.humaneval import STOP_SEQUENCES
from wmtp_cli.data.sources.registry import Schema, Source, register_source
from wmtp_cli.data.templates import render_prompt


def normalise_tiny_code(
    row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int
) -> ProblemRecord:
    """HumanEval-shaped: the prompt is also the program's prefix. The mutation spans stay out of the
    record, whose keys are fixed; :func:`wmtp_cli.data.tiny_code.tiny_code_mutations` gives them."""
    fields = {"task_id": row["task_id"], "prompt": row["prompt"], "entry_point": row["entry_point"]}
    return problem_record(
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


def generated_rows(config) -> list[dict[str, Any]]:
    from wmtp_cli.data.tiny_code import tiny_code_rows

    return tiny_code_rows(config)


TINY_CODE = Schema(
    "tiny_code", "tiny-code", frozenset({"task_id", "prompt", "solution", "incorrect_solutions", "mutations",
                                         "test_list"}),
    "{prompt}", ("entry_point",), normalise_tiny_code,
)  # fmt: skip

register_source(Source(
    "tiny-code", "tiny-code: generated, no files (data.path null; data.split train or test; data.subset the "
    "generator's options, e.g. seed=0,n_train=2000)", (TINY_CODE,), benchmark=True, default_split="test",
    stop_sequences=STOP_SEQUENCES,  # the same shape as HumanEval: a function body after its docstring
    rows_in_process=generated_rows, reads_files=False, made_by="the tiny-code generator",
))  # fmt: skip
