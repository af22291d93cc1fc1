"""``wmtp compare`` end to end at toy size: killed midway, resumed without recomputing, its table recomputed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, assert_usage_error
from tiny_models import make_tiny_mtp_model

from wmtp_cli.compare.report import compute_table, problem_lines


def toy_recipe(folder: Path) -> Path:
    model = make_tiny_mtp_model(folder / "model")
    recipe = {
        "model": {"path": str(model), "dtype": "fp32"},
        "data": {"source": "tiny-code", "subset": "seed=0,n_train=6,n_test=3,n_incorrect=1", "max_length": 64},
        "reward": {"source": "labels"},
        "critic": {"hidden_size": 16, "lr": 1e-2, "batch_size": 4, "max_steps": 4, "eval_every": 2,
                   "val_fraction": 0.3},
        "wmtp": {"lr": 1e-3, "max_steps": 2, "batch_size": 2},
        "eval": {"benchmarks": ["tiny-code"], "n_samples": 2, "k": [1, 2], "temperature": 0.8, "max_new_tokens": 8,
                 "batch_size": 8, "timeout_s": 5},
        "run": {"output_dir": str(folder / "runs"), "name": "toy", "log_every": 1, "save_every": 100},
    }  # fmt: skip
    path = folder / "toy.yaml"
    path.write_text(json.dumps(recipe))
    return path


def test_compare_resumes_after_a_kill_and_its_table_recomputes(wmtp, tmp_path):
    recipe = toy_recipe(tmp_path)
    args = ["compare", str(recipe), "--seeds", "0,1", "--weightings", "critic,uniform", "--allow-code-execution"]
    folder = tmp_path / "runs" / "toy" / "compare"
    cells = folder / "cells"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    killed = subprocess.Popen([sys.executable, "-m", "wmtp_cli", *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (cells.is_dir() and any(cells.glob("*.json"))):
        assert killed.poll() is None, killed.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no cell finished"
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    finished = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in cells.glob("*.json")}
    assert 1 <= len(finished) < 4, finished.keys()

    result = wmtp(*args)
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} reused from an earlier run" in result.stdout
    records = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in cells.glob("*.json")}
    assert len(records) == 4
    assert all(records[name] == finished[name] for name in finished)  # not recomputed

    table = json.loads((folder / "table.json").read_text())
    lines = [json.loads(line) for line in (folder / "problems.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 3  # 2 seeds x 2 weightings x 3 problems
    _, diagnostics = problem_lines(cells)
    recomputed = json.loads(json.dumps(compute_table(lines, "uniform", diagnostics)))
    assert recomputed == {key: value for key, value in table.items() if key != "grid_key"}
    rows = {row["weighting"]: row for row in table["benchmarks"]["tiny-code"]["rows"]}
    assert rows["uniform"]["vs_baseline"] is None and set(rows["critic"]["vs_baseline"]) == {"1", "2"}
    assert rows["uniform"]["weights"]["kl"] == pytest.approx(0, abs=1e-6)
    for seed in (0, 1):
        own = [line["pass_at_k"]["1"] for line in lines if line["weighting"] == "critic" and line["seed"] == seed]
        assert rows["critic"]["per_seed"]["1"][seed] == pytest.approx(sum(own) / len(own))
    assert (folder / "pass_at_1.png").stat().st_size > 1000
    assert (folder / "recipe.yaml").is_file() and (folder / "run_info.json").is_file()
    assert "pass@1 (95% CI)" in (folder / "table.md").read_text()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--weightings", "critic,magic"], "unknown weighting 'magic'"),
        (["--seeds", ""], "--seeds is empty"),
        (["--seeds", "0,x"], "seeds are integers"),
        (["--grid", "wmtp.temprature=0.1,1"], "wmtp.temprature"),
        (["--grid", "wmtp.temperature=hot,1"], "expected a number"),
        (["--grid", "temperature"], "expected section.key=value1,value2"),
        (["--weightings", "critic,ntp"], "--baseline uniform is not among --weightings"),
    ],
)
def test_bad_inputs_are_one_line(wmtp, tmp_path, extra, needle):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"model": {"path": str(tmp_path / "m")}, "run": {"output_dir": str(tmp_path)}}))
    result = wmtp("compare", str(recipe), *extra)
    assert_usage_error(result, needle)
    assert not (tmp_path / "run-compare").exists() and not any(tmp_path.rglob("compare"))


def test_the_options_on_delta_are_off_for_the_weightings_that_use_no_delta(tmp_path):
    from wmtp_cli.compare import plan_compare

    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"model": {"path": str(tmp_path / "m")}, "wmtp": {"zscore_delta": True},
                                  "run": {"output_dir": str(tmp_path)}}))  # fmt: skip
    plan = plan_compare(recipe, (), [0, 1], ["critic", "uniform", "ntp"], (None, []), "uniform")
    flags = {(cell.weighting, cell.seed): plan.recipes[cell].wmtp.zscore_delta for cell in plan.cells}
    assert flags == {("critic", 0): True, ("critic", 1): True, ("uniform", 0): False, ("uniform", 1): False,
                     ("ntp", 0): False, ("ntp", 1): False}  # fmt: skip
    assert {plan.recipes[cell].run.seed for cell in plan.cells} == {0, 1}
