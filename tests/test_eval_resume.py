"""``wmtp eval`` resumes: an eval killed while sampling, run again, writes the report an uninterrupted run writes,
without generating again the problems it had (tiny seeded model, offline).

The model is saved in float64, which ``--model`` loads as it is: the resumed run decodes its problems in other
batches than the uninterrupted one, and in float64 the rounding of batched products, which depends on the
batch, cannot reach a sampled token (see tests/test_generation.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from tiny_models import make_tiny_mtp_model

# the model's samples, two per problem, 4 sequences decoded at once
SAMPLED = ("--benchmark", "tiny-code", "--limit", "4", "--n", "2", "--k", "1", "--k", "2", "--temperature", "0.8",
           "--batch-size", "4", "--max-new-tokens", "8", "--allow-code-execution")  # fmt: skip

# `wmtp eval` in a fresh interpreter that SIGKILLs itself once the samples file has KILL_AFTER problems: a real
# kill, at a point the test knows (no hook in the library)
KILLER = """
import os, signal, sys
from wmtp_cli.evaluation.samples_log import SamplesLog
from wmtp_cli.cli.app import main

append, batches = SamplesLog.append, []

def append_then_die(self, rows):
    append(self, rows)
    batches.append(rows)
    if len(batches) == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)

SamplesLog.append = append_then_die
sys.argv = ["wmtp", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_mtp_model(tmp_path_factory.mktemp("resume") / "model", dtype=torch.float64)


def killed_eval(*args: str, kill_after: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "KILL_AFTER": str(kill_after)}
    return subprocess.run([sys.executable, "-c", KILLER, *args], capture_output=True, text=True, env=env, timeout=300)


def sample_lines(path) -> list[dict]:
    """The problems in a samples file (its header line left out)."""
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def without_timings(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "seconds"}


def test_a_killed_eval_resumes_and_writes_the_uninterrupted_report(wmtp, model_dir, tmp_path, monkeypatch):
    whole, resumed = tmp_path / "whole" / "tiny-code.json", tmp_path / "resumed" / "tiny-code.json"
    assert wmtp("eval", "--model", str(model_dir), *SAMPLED, "--output", str(whole)).returncode == 0
    assert not (tmp_path / "whole" / "tiny-code.samples.jsonl").exists()  # removed once the report is written

    killed = killed_eval("eval", "--model", str(model_dir), *SAMPLED, "--output", str(resumed), kill_after=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    samples = tmp_path / "resumed" / "tiny-code.samples.jsonl"
    task_ids = {f"tiny-code/test/{i}" for i in range(4)}
    [first] = [row["task_id"] for row in sample_lines(samples)]  # the problem whose samples ended first
    assert first in task_ids
    assert not resumed.exists()  # and no report
    header = json.loads(samples.read_text().splitlines()[0])
    assert header["settings"]["seed"] == 0 and "batch_size" not in header["settings"]
    with samples.open("a") as f:  # what a kill in the middle of a write leaves: a cut last line
        f.write('{"task_id": "tiny-code/test/2", "complet')

    from wmtp_cli.evaluation.samples_log import SamplesLog

    generated, append = [], SamplesLog.append
    monkeypatch.setattr(SamplesLog, "append", lambda self, rows: (generated.extend(rows), append(self, rows)))
    # samples do not depend on the batch size: the resumed run may decode more at once
    rerun = wmtp("eval", "--model", str(model_dir), *SAMPLED, "--batch-size", "3", "--output", str(resumed))
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(row["task_id"] for row in generated) == sorted(task_ids - {first})  # only the missing problems
    assert "1 from tiny-code.samples.jsonl" in rerun.stdout and not samples.exists()
    assert without_timings(json.loads(resumed.read_text())) == without_timings(json.loads(whole.read_text()))
    assert (tmp_path / "resumed" / "tiny-code.problems.jsonl").read_text() == (
        tmp_path / "whole" / "tiny-code.problems.jsonl"
    ).read_text()


def test_speculative_eval_resumes_with_its_decoding_statistics(model_dir, tmp_path):
    from wmtp_cli.evaluation.runner import EvalRequest, run_eval

    def request(folder):
        return EvalRequest.build(model=str(model_dir), benchmarks=["tiny-code"], limit=3, max_new_tokens=10,
                                 temperature=0.0, speculative=True, output=tmp_path / folder / "r.json")  # fmt: skip

    [(whole, _)] = run_eval(request("whole"), allow_code_execution=True)

    with pytest.raises(KeyboardInterrupt):
        run_eval(request("resumed"), allow_code_execution=True, progress=interrupt_after_first_batch)
    assert len(sample_lines(tmp_path / "resumed" / "r.samples.jsonl")) == 1

    stages = []
    [(resumed, _)] = run_eval(request("resumed"), allow_code_execution=True, progress=lambda *a: stages.append(a))
    assert ("sampling", 1, 3, "1 from r.samples.jsonl") in stages and ("loading model", 1, 1) in stages
    assert [p.samples for p in resumed.problems] == [p.samples for p in whole.problems]
    timing = {"tokens_per_s"}
    assert {k: v for k, v in resumed.decoding.items() if k not in timing} == {
        k: v for k, v in whole.decoding.items() if k not in timing
    }


def interrupt_after_first_batch(stage, done, total, status=""):
    """A progress callback that stops the run as Ctrl-C would, once the first problem's samples are kept."""
    if stage == "sampling" and done >= 1:
        raise KeyboardInterrupt


def test_samples_of_other_settings_are_not_mixed_in(wmtp, model_dir, tmp_path, caplog):
    from wmtp_cli.evaluation.runner import EvalRequest, run_eval

    out = tmp_path / "tiny-code.json"
    warmer = EvalRequest.build(model=str(model_dir), benchmarks=["tiny-code"], limit=2, n=2, k=[1, 2],
                               temperature=0.8, batch_size=2, max_new_tokens=8, output=out)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_eval(warmer, allow_code_execution=True, progress=interrupt_after_first_batch)
    samples = tmp_path / "tiny-code.samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text(lines[0] + json.dumps(dict(json.loads(lines[1]), completions=["    return 'stale'\n"] * 2)))

    with caplog.at_level("WARNING", logger="wmtp_cli"):
        result = wmtp("eval", "--model", str(model_dir), "--benchmark", "tiny-code", "--limit", "2", "--n", "2",
                      "--k", "1", "--temperature", "0.9", "--batch-size", "2", "--max-new-tokens", "8",
                      "--allow-code-execution", "--output", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(temperature=0.8, not 0.9): starting over" in caplog.text
    assert "stale" not in (tmp_path / "tiny-code.problems.jsonl").read_text()


def test_a_file_that_is_not_evals_samples_file_is_refused(wmtp, model_dir, tmp_path):
    from conftest import assert_usage_error

    theirs = tmp_path / "tiny-code.samples.jsonl"
    theirs.write_text('{"task_id": "tiny-code/test/0", "completion": "    return 1\\n"}\n')
    result = wmtp("eval", "--model", str(model_dir), *SAMPLED, "--output", str(tmp_path / "tiny-code.json"))
    assert_usage_error(result, "not one")
    assert theirs.read_text().startswith('{"task_id"')
