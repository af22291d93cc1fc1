"""``wmtp eval`` with a model: sampling, self-speculative generation, per-head metrics (tiny model, offline)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import assert_usage_error
from tiny_models import make_tiny_mtp_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_mtp_model(tmp_path_factory.mktemp("eval") / "model")


def completions(path) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["task_id"]: [s["completion"] for s in r["samples"]] for r in rows}


def test_speculative_generation_gives_the_greedy_completions(wmtp, model_dir, tmp_path):
    common = ("eval", "--model", str(model_dir), "--benchmark", "humaneval", "--limit", "3", "--max-new-tokens", "24",
              "--allow-code-execution")  # fmt: skip
    plain = wmtp(*common, "--output", str(tmp_path / "plain.json"))
    assert plain.returncode == 0, plain.stderr
    fast = wmtp(*common, "--speculative", "--output", str(tmp_path / "spec.json"))
    assert fast.returncode == 0, fast.stderr
    assert completions(tmp_path / "plain.problems.jsonl") == completions(tmp_path / "spec.problems.jsonl")
    summary = json.loads((tmp_path / "spec.json").read_text())
    decoding = summary["decoding"]
    assert decoding["tokens_per_forward"] >= 1 and set(decoding["acceptance_per_head"]) == {"2", "3", "4"}
    assert summary["settings"]["speculative"] is True and summary["n_problems"] == 3
    assert "tokens per forward" in fast.stdout


def test_compiled_eval_gives_the_greedy_completions(wmtp, model_dir, tmp_path, monkeypatch):
    from wmtp_cli.decoding import compiled

    class TracedSteps(compiled.CompiledSteps):  # the same graphs as inductor's, without generating kernels
        def __init__(self, model, capacity, all_heads, backend="inductor"):
            super().__init__(model, capacity, all_heads, backend="aot_eager")

    monkeypatch.setattr(compiled, "CompiledSteps", TracedSteps)
    common = ("eval", "--model", str(model_dir), "--benchmark", "humaneval", "--limit", "2", "--max-new-tokens", "16",
              "--allow-code-execution")  # fmt: skip
    assert wmtp(*common, "--output", str(tmp_path / "plain.json")).returncode == 0
    for extra, name in [(("--compile",), "compiled"), (("--compile", "--speculative"), "both")]:
        result = wmtp(*common, *extra, "--output", str(tmp_path / f"{name}.json"))
        assert result.returncode == 0, result.stderr
        assert completions(tmp_path / "plain.problems.jsonl") == completions(tmp_path / f"{name}.problems.jsonl")
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert summary["settings"]["compile"] is True and summary["decoding"]["new_tokens"] > 0
    refused = wmtp(*common, "--compile", "--temperature", "0.8", "--n", "2", "--output", str(tmp_path / "x.json"))
    assert refused.returncode == 2 and "--compile is greedy" in refused.stderr


def test_head_metrics_match_a_plain_computation(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wmtp_cli.evaluation.head_metrics import head_metrics

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts, solutions = ["def f(a):\n", "# add\n"], ["    return a\n", "x = 1 + 2\n"]
    metrics = head_metrics(model, tokenizer, prompts, solutions, batch_size=1)
    assert [m.head for m in metrics] == [1, 2, 3, 4]

    ce, hits, count = [0.0] * 4, [0] * 4, [0] * 4
    for prompt, solution in zip(prompts, solutions, strict=True):
        ids = tokenizer(prompt + solution)["input_ids"] + [tokenizer.eos_token_id]
        first = len(tokenizer(prompt)["input_ids"])  # the completion's first token (no merge across the boundary here)
        with torch.no_grad():
            logits = model(torch.tensor([ids]), return_all_heads=True, use_cache=False).logits[0]  # (T, 4, V)
        for t in range(len(ids)):
            for k in range(4):
                if first <= t + k + 1 < len(ids):
                    log_probs = torch.log_softmax(logits[t, k].double(), -1)
                    ce[k] -= float(log_probs[ids[t + k + 1]])
                    hits[k] += int(logits[t, k].argmax()) == ids[t + k + 1]
                    count[k] += 1
    for k, m in enumerate(metrics):
        assert m.tokens == count[k]
        assert math.isclose(m.cross_entropy, ce[k] / count[k], rel_tol=1e-5)
        assert m.top1_accuracy == hits[k] / count[k]


def test_eval_reports_head_metrics_on_the_references(wmtp, model_dir, tmp_path):
    out = tmp_path / "h.json"
    result = wmtp("eval", "--model", str(model_dir), "--benchmark", "humaneval", "--limit", "2", "--max-new-tokens",
                  "8", "--head-metrics", "--allow-code-execution", "--output", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    heads = json.loads(out.read_text())["head_metrics"]
    assert [h["head"] for h in heads] == [1, 2, 3, 4] and all(h["tokens"] > 0 for h in heads)
    assert "top-1 accuracy" in result.stdout


def test_model_eval_errors(wmtp, model_dir, tmp_path):
    base = ("eval", "--model", str(model_dir), "--benchmark", "humaneval", "--allow-code-execution")
    assert_usage_error(wmtp(*base, "--speculative", "--temperature", "0.8"), "greedy")
    assert_usage_error(wmtp(*base, "--n", "4", "--k", "4"), "--temperature")
    assert_usage_error(wmtp(*base, "--n", "2", "--k", "5", "--temperature", "0.5"), "pass@5")
    assert_usage_error(wmtp("eval", "--model", str(tmp_path / "none"), "--benchmark", "humaneval",
                            "--allow-code-execution"), "does not exist")  # fmt: skip


def test_tests_start_beside_an_accelerator_model_and_give_the_same_report(model_dir, tmp_path, monkeypatch):
    from wmtp_cli.evaluation import runner
    from wmtp_cli.execution import Executor

    def request(name):
        return runner.EvalRequest.build(
            model=str(model_dir),
            benchmarks=["tiny-code"],
            limit=3,
            n=2,
            k=[1],
            temperature=0.8,
            max_new_tokens=8,
            output=tmp_path / f"{name}.json",
        )

    submitted, before_scoring = [], []
    submit, evaluate = Executor.submit, runner.evaluate
    monkeypatch.setattr(Executor, "submit", lambda self, job: (submitted.append(job), submit(self, job))[1])
    monkeypatch.setattr(
        runner, "evaluate", lambda *a, **k: (before_scoring.append(len(submitted)), evaluate(*a, **k))[1]
    )
    [(on_cpu, _)] = runner.run_eval(request("cpu"), allow_code_execution=True)
    monkeypatch.setattr(runner._Policy, "on_accelerator", property(lambda self: self._loaded is not None))
    submitted.clear()
    [(beside, _)] = runner.run_eval(request("beside"), allow_code_execution=True)
    # on the CPU nothing starts before sampling ends; beside the model every job has started by then, each once
    assert before_scoring == [0, beside.n_programs] and len(submitted) == beside.n_programs
    assert [p.samples for p in beside.problems] == [p.samples for p in on_cpu.problems]
