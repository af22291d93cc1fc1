"""Bad inputs end in one line on stderr and exit status 2, before any work, leaving nothing behind.

One test (or parametrised case) per bad input: output paths that cannot be written (a file where a
folder must go, a folder where a file must go, a parent that is a file), input files that are not
UTF-8 text, recipe values out of what the code can do, model folders that are missing or files,
texts too long to inspect, and ``--force`` pointed at something that is not an earlier output.
Each checks the exit status, that stderr is one line without a traceback, and that the command
created no file or folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_usage_error
from safetensors.torch import load_file, save_file
from training_fixtures import scored_setup


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative: what a command created shows as a difference."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with the tiny model, scored data and a critic; returns the recipe path."""
    return scored_setup(tmp_path_factory.mktemp("bad-inputs"))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty current folder, so outputs with default paths land where the test looks."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(wmtp, root: Path, *args: str, needles: tuple[str, ...] = ()) -> None:
    """Run ``wmtp ARGS``: one line, exit 2, and nothing created under ``root``."""
    before = tree(root)
    result = wmtp(*args)
    assert_usage_error(result, *needles)
    assert tree(root) == before, sorted(tree(root) - before)


# --- output paths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "train-critic", "train-wmtp"])
def test_run_output_dir_that_is_a_file(wmtp, trained, workdir, command):
    blocker = workdir / "runs-file"
    blocker.write_text("not a folder")
    refused(wmtp, workdir, command, str(trained), f"run.output_dir={blocker}", needles=("is a file, not a folder",))
    assert blocker.read_text() == "not a folder"


def test_pretrain_model_path_under_a_file(wmtp, workdir):
    blocker = workdir / "file"
    blocker.write_text("x")
    recipe = workdir / "p.yaml"
    pretrain = {"vocab_size": 300, "hidden_size": 16, "intermediate_size": 32, "trunk_layers": 1, "n_future": 2,
                "attention_heads": 2, "stdlib_mb": 0, "max_steps": 2}  # fmt: skip
    settings = {"model": {"path": str(blocker / "m")}, "data": {"source": "tiny-code"}, "pretrain": pretrain}
    recipe.write_text(json.dumps({**settings, "run": {"output_dir": str(workdir / "runs")}}))
    refused(wmtp, workdir, "pretrain", str(recipe), needles=("model.path", "is a file, not a folder"))


def test_eval_output_that_is_a_folder(wmtp, workdir):
    samples = workdir / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")
    folder = workdir / "out"
    folder.mkdir()
    refused(wmtp, workdir, "eval", "--benchmark", "humaneval", "--samples", str(samples), "--allow-code-execution",
            "--output", str(folder), needles=("is a folder",))  # fmt: skip
    assert not (workdir / "out.problems.jsonl").exists()


def test_eval_output_whose_parent_is_a_file(wmtp, workdir):
    samples = workdir / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")
    (workdir / "file").write_text("x")
    refused(wmtp, workdir, "eval", "--benchmark", "humaneval", "--samples", str(samples), "--allow-code-execution",
            "--output", str(workdir / "file" / "r.json"), needles=("is a file, not a folder",))  # fmt: skip


@pytest.mark.parametrize("out", ["file/view.html", "folder"])
def test_inspect_weights_out_that_cannot_be_written(wmtp, trained, workdir, out):
    (workdir / "file").write_text("x")
    (workdir / "folder").mkdir()
    text = workdir / "completion.txt"
    text.write_text("def f(a):\n    return a\n")
    critic = trained.parent / "runs" / "r" / "critic"
    refused(wmtp, workdir, "inspect-weights", str(text), "--critic", str(critic), "--format", "html",
            "--out", str(workdir / out), needles=("--out",))  # fmt: skip


# --- input files --------------------------------------------------------------------------------------------

NOT_TEXT = ["not UTF-8", "binary", "folder"]


def not_text(path: Path, kind: str) -> str:
    """Put something that is not a text file at ``path``; returns what the error should say."""
    if kind == "folder":
        path.mkdir()
        return "is a folder"
    path.write_bytes({"not UTF-8": b"caf\xe9 au lait\n", "binary": b"\x7fELF\x02\x01\x01\x00\x00\x00"}[kind])
    return {"not UTF-8": "not UTF-8", "binary": "looks binary"}[kind]


@pytest.mark.parametrize("kind", NOT_TEXT)
def test_eval_samples_that_are_not_text(wmtp, workdir, kind):
    needle = not_text(workdir / "samples.jsonl", kind)
    refused(wmtp, workdir, "eval", "--benchmark", "humaneval", "--samples", str(workdir / "samples.jsonl"),
            "--allow-code-execution", needles=("samples file", needle))  # fmt: skip


@pytest.mark.parametrize("kind", NOT_TEXT)
def test_recipe_that_is_not_text(wmtp, workdir, kind):
    needle = not_text(workdir / "r.yaml", kind)
    refused(wmtp, workdir, "recipe", "validate", str(workdir / "r.yaml"), needles=("recipe", needle))


@pytest.mark.parametrize("kind", NOT_TEXT)
def test_inspect_weights_text_and_prompt_that_are_not_text(wmtp, trained, workdir, kind):
    critic = trained.parent / "runs" / "r" / "critic"
    good = workdir / "good.txt"
    good.write_text("def f(a):\n    return a\n")
    needle = not_text(workdir / "bad.txt", kind)
    bad = str(workdir / "bad.txt")
    refused(wmtp, workdir, "inspect-weights", bad, "--critic", str(critic), needles=("FILE", needle))
    refused(wmtp, workdir, "inspect-weights", str(good), "--prompt-file", bad, "--critic", str(critic),
            needles=("--prompt-file", needle))  # fmt: skip


def test_local_data_that_is_not_text(wmtp, workdir):
    data = workdir / "data.jsonl"
    data.write_bytes(b'{"task_id": "a", "prompt": "caf\xe9"}\n')
    recipe = workdir / "r.yaml"
    recipe.write_text(json.dumps({"data": {"source": "local", "path": str(data)}, "run": {"output_dir": "runs"}}))
    result = wmtp("score", str(recipe))
    assert_usage_error(result, str(data))


def test_inspect_weights_refuses_a_text_above_the_limit(wmtp, trained, workdir):
    from wmtp_cli.inspection.weights_view import MAX_TEXT_BYTES

    big = workdir / "big.txt"
    big.write_text("x = 1\n" * (MAX_TEXT_BYTES // 6 + 1))
    critic = trained.parent / "runs" / "r" / "critic"
    refused(wmtp, workdir, "inspect-weights", str(big), "--critic", str(critic), needles=("at most 1 MB",))


def test_a_path_with_brackets_is_shown_as_it_is(wmtp, workdir):
    # the error line is rich text: brackets in a path ('[x]', '[bold]') must not be read as markup and vanish
    missing = workdir / "a[x]" / "[bold]r.yaml"
    refused(wmtp, workdir, "recipe", "validate", str(missing), needles=(str(missing),))
    refused(wmtp, workdir, "train-critic", str(missing), needles=(str(missing),))


# --- recipe values ------------------------------------------------------------------------------------------


def test_an_empty_recipe_is_a_problem(wmtp, workdir):
    for text in ("", "# only a comment\n", "{}\n"):
        (workdir / "empty.yaml").write_text(text)
        refused(wmtp, workdir, "recipe", "validate", str(workdir / "empty.yaml"), needles=("the recipe is empty",))


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("critic.lr=.inf", "must be a finite number"),
        ("wmtp.lr=.nan", "must be a finite number"),
        ("wmtp.lr=1e308", "must be <= 1.0"),
        ("wmtp.min_reward=-.inf", "must be a finite number"),
        ("data.max_length=1e9", "must be <= 1048576"),
        ("wmtp.temperature=1e-300", "must be >= 0.001"),
        ("eval.temperature=1e-5", "must be 0 or >= 0.01"),
        ("eval.top_p=5", "must be <= 1"),
        ("reward.timeout_s=1e300", "must be <= 86400"),
        ("run.seed=-1", "must be >= 0"),
    ],
)
def test_recipe_values_the_code_cannot_use(wmtp, workdir, override, needle):
    recipe = workdir / "r.yaml"
    recipe.write_text(json.dumps({"model": {"path": "m"}, "run": {"output_dir": "runs"}}))
    result = wmtp("recipe", "validate", str(recipe), override)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert needle in result.stderr, result.stderr


def test_integral_floats_are_integers(wmtp, workdir):
    recipe = workdir / "r.yaml"
    recipe.write_text(json.dumps({"model": {"path": "m"}}))
    result = wmtp("recipe", "validate", str(recipe), "wmtp.max_steps=1e4", "data.max_length=2.5e3")
    assert result.returncode == 0, result.stderr
    assert "max_steps: 10000\n" in result.stdout and "max_length: 2500\n" in result.stdout


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [("--top-p", "5", "--top-p: must be <= 1"), ("--top-p", "0", "--top-p: must be > 0"),
     ("--temperature", "1e-300", "--temperature: must be 0 or >= 0.01"), ("--timeout", "inf", "--timeout")],
)  # fmt: skip
def test_eval_flags_are_checked_as_recipe_values(wmtp, workdir, flag, value, needle):
    samples = workdir / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")
    refused(wmtp, workdir, "eval", "--benchmark", "humaneval", "--samples", str(samples), "--allow-code-execution",
            flag, value, needles=(needle,))  # fmt: skip


def test_typer_usage_errors_are_one_line_too(wmtp, workdir):
    refused(wmtp, workdir, "eval", "--n", "0", needles=("--n",))
    refused(wmtp, workdir, "eval", "--no-such-flag", needles=("--no-such-flag",))


# --- model folders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "file", "folder without config.json"])
def test_model_path_that_is_not_a_model_folder(wmtp, trained, workdir, kind):
    path = workdir / "model"
    if kind == "file":
        path.write_text("x")
    elif kind != "missing":
        path.mkdir()
    needle = {"missing": "does not exist", "file": "is a file", "folder without config.json": "without config.json"}
    refused(wmtp, workdir, "train-wmtp", str(trained), f"model.path={path}", f"run.output_dir={workdir / 'runs'}",
            needles=("model.path", needle[kind]))  # fmt: skip
    output = str(workdir / "r.json")
    refused(wmtp, workdir, "eval", "--model", str(path), "--benchmark", "humaneval", "--limit", "1",
            "--allow-code-execution", "--output", output, needles=("--model", needle[kind]))  # fmt: skip


def test_a_relative_model_path_that_is_missing_is_not_called_a_repo_id(wmtp, trained, workdir):
    result = wmtp("train-wmtp", str(trained), "model.path=runs/missing-model", f"run.output_dir={workdir / 'runs'}")
    assert_usage_error(result, "runs/missing-model is not a local folder")
    assert "Repo id must" not in result.stderr


# --- NaN stops ----------------------------------------------------------------------------------------------


def elsewhere(trained: Path, tmp_path: Path) -> tuple[str, str]:
    """Overrides that train on the fixture's scored data but write under ``tmp_path``."""
    return f"data.scored={trained.parent / 'runs' / 'r' / 'scored'}", f"run.output_dir={tmp_path / 'runs'}"


def _poison(folder: Path, file_name: str) -> None:
    """Set every weight of one tensor in ``folder/file_name`` to NaN."""
    state = load_file(str(folder / file_name))
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(folder / file_name), metadata={"format": "pt"})


def test_a_nan_stop_names_the_lm_loss_and_its_settings(wmtp, trained, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained.parent / "model", model)
    _poison(model, "model.safetensors")
    result = wmtp(
        "train-wmtp", str(trained), f"model.path={model}", "wmtp.weighting=uniform", *elsewhere(trained, tmp_path)
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "the LM loss became nan at step 1" in result.stderr
    assert "the model holds non-finite weights (model.path)" in result.stderr


def test_a_nan_stop_names_the_critics_values_first(wmtp, trained, tmp_path):
    import shutil

    critic = tmp_path / "critic"
    shutil.copytree(trained.parent / "runs" / "r" / "critic", critic)
    _poison(critic, "value_head.safetensors")
    result = wmtp("train-wmtp", str(trained), f"wmtp.critic_path={critic}", *elsewhere(trained, tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "the critic's values became nan at step 1 (and so the weights, the LM loss" in result.stderr
    assert "the value head holds non-finite weights (wmtp.critic_path)" in result.stderr
