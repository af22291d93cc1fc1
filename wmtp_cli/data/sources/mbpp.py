"""MBPP (``google-research-datasets/mbpp``): its "full" and "sanitized" configs; the completion is a whole program."""

from __future__ import annotations

from typing import Any

from wmtp_cli.data.records import ProblemRecord, assert_tests
from wmtp_cli.data.schemas import problem_record
from wmtp_cli.data.sources.registry import Schema, Source, register_source
from wmtp_cli.data.templates import render_prompt

# The header of the MBPP paper's prompt (Austin et al. 2021, appendix; lm-evaluation-harness's mbpp task),
# without its [BEGIN]/[DONE] markers: a fine-tuned completion ends with the EOS token.
TEMPLATE = (
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}\n"
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
    return problem_record(
        task_id,
        source,
        render_prompt(schema, fields, template),
        [_mbpp_code(row["code"])],
        [],
        assert_tests(row["test_list"], setup=setup),
        max_solutions=max_solutions,
        seed=seed,
    )


MBPP = Schema("mbpp", "MBPP", frozenset({"task_id", "text", "code", "test_list"}), TEMPLATE, ("text", "tests"),
              normalise_mbpp)  # fmt: skip
MBPP_SANITIZED = Schema("mbpp_sanitized", "MBPP sanitized", frozenset({"task_id", "prompt", "code", "test_list"}),
                        TEMPLATE, ("text", "tests"), normalise_mbpp)  # fmt: skip

register_source(Source(
    "mbpp", "MBPP: data.path = files in its hub schema, or null = the hub (config data.subset or full)",
    (MBPP, MBPP_SANITIZED), benchmark=True, default_split="test",
    # A whole function or program: stop where a base model starts writing its own tests or a new prompt.
    stop_sequences=("\nassert ", "\nif __name__", "\n[DONE]", '\n"""', "\nYou are an expert Python programmer"),
    hub=("google-research-datasets/mbpp", "full"),
))  # fmt: skip
