"""Recipes: every shipped recipe validates, every class of problem is reported with its dotted key and
all of them at once, overrides are type-checked, and a saved resolved recipe loads back equal."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from conftest import assert_usage_error, run_wmtp_subprocess

from wmtp_cli.config import (
    CriticConfig,
    DataConfig,
    EvalConfig,
    ExecutionConfig,
    ModelConfig,
    PretrainConfig,
    Recipe,
    RewardConfig,
    RunConfig,
    WMTPConfig,
    describe_keys,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
    save_resolved_recipe,
)
from wmtp_cli.errors import RecipeError, UsageError

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
ALL_SECTIONS = [f.name for f in dataclasses.fields(Recipe)]
SECTION_CLASSES = [
    ModelConfig,
    DataConfig,
    RewardConfig,
    CriticConfig,
    WMTPConfig,
    EvalConfig,
    PretrainConfig,
    ExecutionConfig,
    RunConfig,
]


def problems_of(data: dict, overrides: tuple[str, ...] = (), need: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(data, overrides, need)
    return info.value.problems


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_recipes_are_shipped():
    assert {p.name for p in RECIPES} >= {"mtp-7b-codecontests.yaml", "tiny-smoke.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates_and_says_how_to_run_it(path: Path):
    recipe = load_recipe(path, need=ALL_SECTIONS)
    assert recipe.model is not None and recipe.model.path
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert f"wmtp recipe validate recipes/{path.name}" in header


def test_7b_recipe_settings():
    recipe = load_recipe(REPO / "recipes" / "mtp-7b-codecontests.yaml")
    assert recipe.model.path == "checkpoints/7B_1T_4"
    assert recipe.data.source == "codecontests"
    assert (recipe.wmtp.weighting, recipe.wmtp.lr, recipe.wmtp.grad_clip) == ("critic", 5e-5, 0.1)
    header = (REPO / "recipes" / "mtp-7b-codecontests.yaml").read_text().split("\n\n")[0]
    assert "wmtp download facebook/multi-token-prediction --variant 7B_1T_4 --out checkpoints/7B_1T_4" in header


def test_empty_recipe_gets_defaults_and_null_section_too():
    recipe = recipe_from_dict({"wmtp": None})
    assert recipe.model is None  # left out, not needed
    assert recipe.wmtp.temperature == 1.0 and recipe.eval.k == [1]
    assert recipe.eval.k is not recipe_from_dict({}).eval.k  # list defaults are not shared


def test_unknown_key_suggests_closest():
    assert problems_of({"wmtp": {"temprature": 0.5}}) == [
        "unknown key 'wmtp.temprature' (did you mean 'wmtp.temperature'?)"
    ]


def test_key_in_wrong_section_points_to_its_section():
    (problem,) = problems_of({"eval": {"lambda_vf": 0.5}})
    assert problem.startswith("unknown key 'eval.lambda_vf'") and "wmtp.lambda_vf" in problem


def test_unknown_section():
    assert problems_of({"wmpt": {}}) == ["unknown section 'wmpt' (did you mean 'wmtp'?)"]
    (problem,) = problems_of({"wmtp": [1]})
    assert problem.startswith("wmtp: expected a mapping")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("wmtp.temperature", "hot", "wmtp.temperature: expected a number, got 'hot' (str)"),
        ("wmtp.max_steps", 1.5, "wmtp.max_steps: expected an integer, got 1.5 (float)"),
        ("wmtp.max_steps", True, "wmtp.max_steps: expected an integer, got true (bool)"),
        ("wmtp.abs_delta", 1, "wmtp.abs_delta: expected true or false, got 1 (int)"),
        ("run.name", 7, "run.name: expected a string or null, got 7 (int)"),
        ("eval.k", 5, "eval.k: expected a list, got 5 (int)"),
        ("eval.k", [1, "x"], "eval.k[1]: expected an integer, got 'x' (str)"),
        ("model.dtype", None, "model.dtype: expected one of 'auto', 'fp32', 'bf16', 'fp16', got null"),
    ],
)
def test_wrong_type(key: str, value, message: str):
    section, name = key.split(".")
    data = {section: {name: value}, "model": {"path": "m", **({name: value} if section == "model" else {})}}
    assert problems_of(data) == [message]


def test_int_accepted_as_float():
    recipe = recipe_from_dict({"wmtp": {"temperature": 2}})
    assert recipe.wmtp.temperature == 2.0 and isinstance(recipe.wmtp.temperature, float)


def test_bad_choice_lists_allowed_values_and_suggests():
    (problem,) = problems_of({"critic": {"return_target": "gea"}})
    assert problem == "critic.return_target: expected one of 'mc', 'td0', 'gae', got 'gea' (str) (did you mean 'gae'?)"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("wmtp.temperature", 0, "wmtp.temperature: must be >= 0.001, got 0.0"),
        ("critic.val_fraction", 1.0, "critic.val_fraction: must be < 1, got 1.0"),
        ("critic.gamma", -0.1, "critic.gamma: must be >= 0, got -0.1"),
        ("eval.k", [1, 0], "eval.k[1]: must be >= 1, got 0"),
    ],
)
def test_out_of_range(key: str, value, message: str):
    section, name = key.split(".")
    assert problems_of({section: {name: value}}) == [message]


def test_missing_required_only_where_the_section_is_given_or_needed():
    assert recipe_from_dict({"wmtp": {}}).model is None
    assert problems_of({"model": {"dtype": "bf16"}})[0].startswith("model.path: missing required value")
    assert problems_of({}, need=("model",))[0].startswith("model.path: missing required value")
    with pytest.raises(ValueError, match="unknown sections"):
        recipe_from_dict({}, need=("modle",))


def test_keys_that_depend_on_each_other():
    assert problems_of({"data": {"source": "local"}}) == ["data.path: required when data.source is 'local'"]
    assert problems_of({"reward": {"source": "reward_model"}}) == [
        "reward.reward_model: required when reward.source is 'reward_model'"
    ]
    assert problems_of({"eval": {"k": [1, 10], "n_samples": 5}}) == [
        "eval.k: pass@10 needs eval.n_samples >= 10, got 5"
    ]


def test_all_problems_reported_together(tmp_path: Path):
    path = write(
        tmp_path,
        "model:\n  dtype: bf16\n"  # model.path missing
        "wmtp:\n  temprature: 0.5\n  lr: fast\n"  # unknown key, wrong type
        "critic:\n  gamma: 2\n",  # out of range
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    problems = info.value.problems
    assert len(problems) == 4, problems
    for key in ("model.path", "wmtp.temprature", "wmtp.lr", "critic.gamma"):
        assert sum(key in p for p in problems) == 1, (key, problems)
    assert str(path) in str(info.value)


def test_overrides_apply_and_are_type_checked(tmp_path: Path):
    path = write(tmp_path, "model:\n  path: m\n")
    recipe = load_recipe(
        path,
        [
            "wmtp.temperature=0.5",
            "run.name=foo",
            "eval.k=[1,10]",
            "eval.n_samples=10",
            "critic.lr=1e-3",
            "run.seed=3",
            "wmtp.abs_delta=true",
            "data.limit=null",
            "eval.benchmarks=[humaneval]",
        ],
    )
    assert recipe.wmtp.temperature == 0.5
    assert recipe.run.name == "foo" and recipe.run.seed == 3
    assert recipe.eval.k == [1, 10] and recipe.critic.lr == 1e-3
    assert recipe.wmtp.abs_delta is True and recipe.data.limit is None
    assert recipe.eval.benchmarks == ["humaneval"]
    # A string key keeps text YAML would read as something else.
    assert load_recipe(path, ["run.name=2024", "data.prompt_template={prompt}"]).run.name == "2024"
    assert load_recipe(path, ["data.prompt_template={prompt}"]).data.prompt_template == "{prompt}"
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["wmtp.temperature=hot", "wmtp.temprature=1", "no_equals_sign", "eval.k=[1,"])
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert "wmtp.temperature: expected a number, got 'hot' (str)" in problems
    assert any("'wmtp.temprature'" in p and "did you mean 'wmtp.temperature'" in p for p in problems)
    assert any(p.startswith("override 'no_equals_sign'") for p in problems)
    assert any(p.startswith("override 'eval.k=[1,'") for p in problems)


def test_override_creates_a_missing_section_and_checks_it(tmp_path: Path):
    path = write(tmp_path, "run:\n  seed: 1\n")
    with pytest.raises(RecipeError, match=r"model\.path: missing required value"):
        load_recipe(path, ["model.dtype=fp16"])
    assert load_recipe(path, ["model.path=x"]).model.path == "x"


def test_exponent_without_dot_is_a_float(tmp_path: Path):
    recipe = load_recipe(write(tmp_path, "critic:\n  lr: 1e-4\nwmtp:\n  lr: 3E-5\n"))
    assert recipe.critic.lr == 1e-4 and recipe.wmtp.lr == 3e-5


def test_file_problems_are_usage_errors(tmp_path: Path):
    with pytest.raises(UsageError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="is a folder"):
        load_recipe(tmp_path)
    with pytest.raises(UsageError, match="line 3") as info:
        load_recipe(write(tmp_path, "wmtp:\n  lr: 1\n   bad: [\n"))
    assert not isinstance(info.value, RecipeError)
    with pytest.raises(UsageError, match="top level must be a mapping"):
        load_recipe(write(tmp_path, "- model\n- data\n"))
    with pytest.raises(UsageError, match=r"line 3.*'lr' twice"):
        load_recipe(write(tmp_path, "wmtp:\n  lr: 1.0\n  lr: 2.0\n"))


def test_resolved_recipe_round_trips(tmp_path: Path):
    original = load_recipe(
        REPO / "recipes" / "mtp-7b-codecontests.yaml",
        ["wmtp.temperature=0.5", "eval.k=[1,10]", "eval.n_samples=10", "run.name=2024", "critic.lr=3e-4"],
    )
    saved = save_resolved_recipe(original, tmp_path / "out")
    assert saved == tmp_path / "out" / "recipe.yaml"
    assert saved.read_text().startswith("# Resolved recipe")
    assert load_recipe(saved) == original
    assert recipe_to_dict(load_recipe(saved))["wmtp"]["temperature"] == 0.5


def test_partial_recipe_round_trips(tmp_path: Path):
    original = recipe_from_dict({"critic": {"gamma": 0.9}})
    assert load_recipe(save_resolved_recipe(original, tmp_path)) == original


def test_run_info(tmp_path: Path):
    save_resolved_recipe(recipe_from_dict({}), tmp_path)
    info = json.loads((tmp_path / "run_info.json").read_text())
    expected = {
        "wmtp",
        "python",
        "torch",
        "transformers",
        "accelerate",
        "datasets",
        "git",
        "argv",
        "created_utc",
    }
    assert set(info) == expected
    from wmtp_cli import __version__

    assert info["wmtp"] == __version__ and info["torch"]
    assert info["argv"] == sys.argv
    assert info["created_utc"].endswith("+00:00")
    if info["git"] is not None:
        assert len(info["git"]["commit"]) == 40 and isinstance(info["git"]["dirty"], bool)
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_describe_keys_covers_the_schema():
    rows = describe_keys()
    keys = [row[0] for row in rows]
    assert len(keys) == len(set(keys)) == sum(len(dataclasses.fields(cls)) for cls in SECTION_CLASSES)
    by_key = {row[0]: row for row in rows}
    assert by_key["model.path"][2] == "required"
    assert by_key["wmtp.temperature"][1:3] == ("float, >= 0.001", "1.0")
    assert by_key["eval.k"][2] == "[1]"
    assert all(row[3] for row in rows)
    assert [row[0] for row in describe_keys("run")] == [f"run.{f.name}" for f in dataclasses.fields(RunConfig)]
    with pytest.raises(UsageError, match="did you mean 'wmtp'"):
        describe_keys("wmpt")


def test_cli_validate_good_recipe():
    # The real console script in a fresh interpreter, once; the other CLI tests run in-process.
    done = run_wmtp_subprocess("recipe", "validate", str(REPO / "recipes/tiny-smoke.yaml"), "wmtp.temperature=0.5")
    assert done.returncode == 0, done.stderr
    assert "temperature: 0.5" in done.stdout and "ok" in done.stdout


def test_cli_validate_bad_recipe(tmp_path: Path, wmtp):
    bad = write(tmp_path, "model:\n  path: m\nwmtp:\n  temprature: 0.5\n")
    done = wmtp("recipe", "validate", str(bad), "critic.gamma=2")
    assert_usage_error(done, "wmtp.temprature", "critic.gamma", lines=3)  # the count, then one line a problem


def test_cli_one_problem_is_one_line(tmp_path: Path, wmtp):
    bad = write(tmp_path, "model:\n  path: m\nwmtp:\n  weighting: magic\n")
    done = wmtp("recipe", "validate", str(bad), env={"COLUMNS": "300"})
    assert_usage_error(done, "wmtp.weighting", "critic")
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_missing_recipe_file(tmp_path: Path, wmtp):
    assert_usage_error(wmtp("recipe", "validate", str(tmp_path / "none.yaml")), "none.yaml")


def test_cli_keys(wmtp):
    done = wmtp("recipe", "keys", "wmtp", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "wmtp.temperature" in done.stdout and "model.path" not in done.stdout
