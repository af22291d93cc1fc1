"""tiny-code, the generated benchmark: determinism, the held-out split, mutations that fail, spans, loading."""

from __future__ import annotations

import hashlib
import json
import random

import datasets
import pytest

from wmtp_cli.config.schema import DataConfig
from wmtp_cli.data import tiny_code
from wmtp_cli.data.records import ProblemRecord
from wmtp_cli.data.sources import load_problems
from wmtp_cli.data.templates import stop_sequences
from wmtp_cli.data.tiny_code import FAMILIES, KINDS, generate, held_out, tiny_code_mutations
from wmtp_cli.errors import UsageError
from wmtp_cli.execution import Executor, job_for

RECORD_KEYS = list(ProblemRecord.__annotations__)
N_TRAIN, N_TEST = 300, 100


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """Keep what ``datasets`` writes for these tests out of the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_datasets")


def config(split: str, subset: str | None = f"n_train={N_TRAIN},n_test={N_TEST}", **options) -> DataConfig:
    return DataConfig(source="tiny-code", split=split, subset=subset, **options)


def test_same_seed_same_problems_other_seed_others():
    first = generate("train", N_TRAIN)
    assert [p.row() for p in first] == [p.row() for p in tiny_code._generate.__wrapped__("train", N_TRAIN, 0, 3, 0.2)]
    other = generate("train", N_TRAIN, seed=1)
    assert len({p.prompt for p in first} & {p.prompt for p in other}) < N_TRAIN // 2
    assert held_out("piecewise", 0, 0.2) != held_out("piecewise", 1, 0.2)
    # Growing one split only appends to it, and leaves the other alone.
    assert [p.row() for p in generate("train", 50)] == [p.row() for p in first[:50]]
    assert generate("test", N_TEST) == generate("test", N_TEST)


def test_the_benchmark_does_not_change_silently():
    """Same across processes (no hash-seeded order) and versions: change this only with the generator."""
    rows = json.dumps([p.row() for p in generate("test", 20)])
    assert hashlib.sha256(rows.encode()).hexdigest()[:16] == "acd3ff1b54b80094"


def test_splits_hold_out_combinations():
    train, test = generate("train", N_TRAIN), generate("test", N_TEST)
    for problem in train:
        assert not set(problem.pairs) & held_out(problem.family, 0, 0.2), problem.task_id
    for problem in test:
        assert set(problem.pairs) & held_out(problem.family, 0, 0.2), problem.task_id
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert len({p.prompt for p in train}) == N_TRAIN and len({p.prompt for p in test}) == N_TEST
    # Every family is in both splits, and train shows every operator and constant of each family.
    assert {p.family for p in train} == {p.family for p in test} == set(FAMILIES)
    for family, spec in FAMILIES.items():
        held = held_out(family, 0, 0.2)
        assert held and len(held) < len(spec.universe)
        kept = set(spec.universe) - held
        assert {op for op, _ in kept} == {op for op, _ in spec.universe}
        assert {k for _, k in kept} == {k for _, k in spec.universe}


def test_problem_shape_and_spans():
    problems = generate("train", N_TRAIN) + generate("test", N_TEST)
    kinds = set()
    for p in problems:
        assert p.prompt.startswith(f"def {p.entry_point}(") and p.prompt.endswith('"""\n')
        assert p.solution.startswith("    ") and p.solution.endswith("\n") and len(p.solution) < 200
        assert 1 <= p.solution.count("\n") <= 8 and len(p.tests) >= 3
        assert len(p.incorrect_solutions) == len(p.mutations) == 3
        assert len(set(p.incorrect_solutions)) == 3 and p.solution not in p.incorrect_solutions
        for wrong, m in zip(p.incorrect_solutions, p.mutations, strict=True):
            kinds.add(m["kind"])
            # The span is exactly what changed: putting the original back gives the correct solution,
            # and the edit is one token (a few characters) with the same text before it.
            assert wrong[: m["start"]] + m["original"] + wrong[m["end"] :] == p.solution
            assert wrong[m["start"] : m["end"]] != m["original"]
            assert wrong[: m["start"]] == p.solution[: m["start"]]
            assert 1 <= m["end"] - m["start"] <= 5 and " " not in wrong[m["start"] : m["end"]].strip()
    assert kinds == set(KINDS)


def passes(program: str) -> bool:
    try:
        exec(program, {})
    except Exception:  # a failed assert, or the mutant's own error (a wrong variable's TypeError)
        return False
    return True


def test_solutions_pass_and_mutants_fail_in_process():
    """Every problem of the draws above, in this process (the code is ours): fast, every family and kind."""
    for p in generate("train", N_TRAIN) + generate("test", N_TEST):
        tests = "\n" + "\n".join(p.tests)
        assert passes(p.prompt + p.solution + tests), p.task_id
        assert not any(passes(p.prompt + wrong + tests) for wrong in p.incorrect_solutions), p.task_id


def test_solutions_pass_and_mutants_fail_in_the_sandbox():
    problems = load_problems(config("train")).to_list() + load_problems(config("test")).to_list()
    sample = random.Random(0).sample(problems, 100)
    jobs = [job_for(r, c) for r in sample for c in [*r["solutions"], *r["incorrect_solutions"]]]
    with Executor(timeout_s=10, isolation="auto") as executor:
        results = executor.run(jobs)
    expected = [i == 0 for r in sample for i in range(1 + len(r["incorrect_solutions"]))]
    wrong = [
        (job.program, r.status, r.detail) for job, r, e in zip(jobs, results, expected, strict=True) if r.passed != e
    ]
    assert not wrong


@pytest.mark.parametrize(("split", "n"), [("train", N_TRAIN), ("test", N_TEST)])
def test_load_problems(split, n):
    problems = load_problems(config(split))
    assert len(problems) == n and problems.column_names == RECORD_KEYS
    record = problems[0]
    assert record["task_id"] == f"tiny-code/{split}/0" and record["source"] == "tiny-code"
    assert record["prompt"] == record["program_prefix"] and record["time_limit_s"] is None
    assert record["tests"]["kind"] == "assert" and record["tests"]["statements"][0].startswith("assert ")
    assert len(record["solutions"]) == 1 and len(record["incorrect_solutions"]) == 3
    assert stop_sequences(record["source"]) == stop_sequences("humaneval")

    spans = tiny_code_mutations(config(split))
    assert set(spans) == set(problems["task_id"])
    for row in problems:
        for wrong in row["incorrect_solutions"]:
            m = spans[row["task_id"]][wrong]
            assert wrong[: m["start"]] + m["original"] + wrong[m["end"] :] == row["solutions"][0]


def test_load_options_and_errors():
    default = load_problems(config("test", subset=None, limit=5))
    assert len(default) == 5 and default["task_id"][0] == "tiny-code/test/0"
    assert load_problems(config("test", subset=None, limit=5)).to_list() == default.to_list()
    reseeded = load_problems(config("test", subset="seed=3,n_test=5,n_incorrect=2", max_solutions=1))
    assert reseeded["prompt"] != default["prompt"]
    assert all(len(w) == 1 for w in reseeded["incorrect_solutions"])  # max_solutions applies as elsewhere
    spans = tiny_code_mutations(config("test", subset="seed=3,n_test=5,n_incorrect=2"))
    assert all(len(by_text) == 2 for by_text in spans.values())
    templated = load_problems(config("test", subset="n_test=2", prompt_template="# {entry_point}\n{prompt}"))
    assert (
        templated[0]["prompt"]
        == f"# {templated[0]['program_prefix'][4:].split('(')[0]}\n" + templated[0]["program_prefix"]
    )
    with pytest.raises(UsageError, match="splits train and test, not 'validation'"):
        load_problems(config("validation"))
    with pytest.raises(UsageError, match="keys seed, n_train"):
        load_problems(config("train", subset="size=3"))
    with pytest.raises(UsageError, match="n_train must be a whole number"):
        load_problems(config("train", subset="n_train=many"))
    with pytest.raises(UsageError, match=r"data\.path is not used"):
        load_problems(config("train", path="x.jsonl"))
