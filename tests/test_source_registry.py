"""Data sources are declared once (wmtp_cli/data/sources/): a source registered from outside the package is a
data source and a benchmark like the built-in ones, and the tables derived from the registry agree with it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wmtp_cli.data.records import assert_tests
from wmtp_cli.data.schemas import detect_schema, problem_record
from wmtp_cli.data.sources import SCHEMAS, SOURCES, Schema, Source, register_source
from wmtp_cli.data.templates import render_prompt, stop_sequences

ROWS = [
    {"toy_id": "add", "signature": "def add(a, b):\n", "checks": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
    {"toy_id": "neg", "signature": "def neg(a):\n", "checks": ["assert neg(2) == -2"]},
]


def normalise_toy(row: dict[str, Any], source: str, template: str | None, max_solutions: int | None, seed: int):
    task_id = f"toy/{row['toy_id']}"
    prompt = render_prompt("toy", {"task_id": task_id, "prompt": row["signature"]}, template)
    return problem_record(task_id, source, prompt, [], [], assert_tests(row["checks"]),
                          program_prefix=row["signature"])  # fmt: skip


TOY_SCHEMA = Schema("toy", "toy", frozenset({"toy_id", "signature", "checks"}), "{prompt}", (), normalise_toy)
TOY = Source("toy", "two toy problems", (TOY_SCHEMA,), benchmark=True, default_split="test",
             stop_sequences=("\ndef ",), rows_in_process=lambda config: ROWS, reads_files=False,
             made_by="the test's rows")  # fmt: skip


@pytest.fixture
def toy_source():
    register_source(TOY)  # the one registration line a new source module has
    try:
        yield TOY
    finally:
        del SOURCES["toy"], SCHEMAS["toy"]


def test_a_registered_source_is_a_benchmark_of_wmtp_eval(toy_source, wmtp, tmp_path):
    samples = tmp_path / "samples.jsonl"
    rows = [("toy/add", "    return a + b\n"), ("toy/add", "    return a - b\n"), ("toy/neg", "    return -a\n"),
            ("toy/neg", "    return a\n")]  # fmt: skip
    samples.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in rows))
    out = tmp_path / "toy.json"
    result = wmtp("eval", "--benchmark", "toy", "--samples", str(samples), "--allow-code-execution", "--output",
                  str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["n_problems"] == 2 and summary["n_passed"] == 2 and summary["pass_at_k"] == {"1": 0.5}


def test_the_derived_tables_read_the_registry(toy_source):
    from wmtp_cli.evaluation.benchmarks import load_benchmark

    assert detect_schema(["toy_id", "signature", "checks", "extra"], "here") == "toy"
    assert stop_sequences("toy") == ("\ndef ",) and stop_sequences("nowhere") == ()
    assert [p["task_id"] for p in load_benchmark("toy")] == ["toy/add", "toy/neg"]
    # the built-in sources, in the order their schemas are detected
    assert list(SOURCES)[:6] == ["codecontests", "humaneval", "mbpp", "local", "tiny-code", "hub"]
    assert [name for name, s in SOURCES.items() if s.benchmark][:4] == ["codecontests", "humaneval", "mbpp",
                                                                           "tiny-code"]  # fmt: skip


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="registered already"):
        register_source(SOURCES["mbpp"])
