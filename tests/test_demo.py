"""``wmtp demo``: the critic evidence against a plain per-sequence reference, and the whole pipeline at toy size."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_usage_error
from tiny_models import make_tiny_mtp_model

from wmtp_cli.data.tiny_code import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    from wmtp_cli.critic import ValueHead, ValueHeadConfig
    from wmtp_cli.model import MTPForCausalLM

    folder = make_tiny_mtp_model(tmp_path_factory.mktemp("evidence") / "model")
    model = MTPForCausalLM.from_pretrained(folder).eval()
    torch.manual_seed(1)
    config = ValueHeadConfig(input_size=model.config.hidden_size, hidden_size=16, surprise=True, attention_heads=2)
    head = ValueHead(config)
    with torch.no_grad():
        for p in head.parameters():  # the output layer starts at zero: give every token a different value
            p.add_(torch.randn_like(p) * 0.5)
    return model, AutoTokenizer.from_pretrained(folder), head.eval()


def _auc_by_pairs(scores: list[float], positive: list[bool]) -> float:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _reference(model, tokenizer, head, problems, mutations):
    """One sequence at a time (with the EOS that ends a completion), delta by a loop, mutated tokens by overlap."""
    from wmtp_cli.critic import critic_values
    from wmtp_cli.data.tokenization import split_prompt_completion

    finals, correct, mutated, other = [], [], [], []
    for problem in problems:
        candidates = [(s, None) for s in problem["solutions"]]
        candidates += [(s, mutations[problem["task_id"]][s]) for s in problem["incorrect_solutions"]]
        for completion, edit in candidates:
            [(prompt_ids, ids, spans)] = split_prompt_completion(tokenizer, [problem["prompt"]], [completion])
            with torch.no_grad():
                x = torch.tensor([prompt_ids + ids + [tokenizer.eos_token_id]])
                h, rotary, _ = model.embed_and_trunk(x)
                values = critic_values(head, model, x, h, rotary)[0].tolist()
            finals.append(values[-1])
            correct.append(edit is None)
            if edit is None:
                continue
            for i, (start, end) in enumerate([*spans, (None, None)]):  # the last: EOS, never mutated
                j = len(prompt_ids) + i
                delta = abs(values[j] - values[j - 1])
                hit = start is not None and start < edit["end"] and end > edit["start"]
                (mutated if hit else other).append(delta)
    return _auc_by_pairs(finals, correct), sum(mutated) / len(mutated), sum(other) / len(other), len(mutated)


def test_critic_evidence_matches_a_plain_per_sequence_reference(tiny):
    from wmtp_cli.demo.evidence import critic_evidence

    model, tokenizer, head = tiny
    made = generate("test", 4, seed=0, n_incorrect=2)
    problems = [p.row() | {"solutions": [p.solution]} for p in made]
    mutations = {p.task_id: {t: dict(m) for t, m in zip(p.incorrect_solutions, p.mutations, strict=True)} for p in made}
    auc, mutated, other, n_mutated = _reference(model, tokenizer, head, problems, mutations)

    # batch_size 5 mixes problems and lengths in one padded batch
    evidence = critic_evidence(model, tokenizer, head, problems, mutations, batch_size=5)
    assert (evidence.n_correct, evidence.n_incorrect) == (4, 8)
    assert evidence.n_mutated_tokens == n_mutated > 0
    torch.testing.assert_close(evidence.auc, auc)
    torch.testing.assert_close(evidence.mutated_abs_delta, mutated, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(evidence.other_abs_delta, other, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(evidence.delta_ratio, mutated / other, rtol=1e-5, atol=0)


def test_demo_refuses_other_data_sources_and_bad_eval_settings_before_any_work(wmtp, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"model": {"path": str(tmp_path / "m")}, "data": {"source": "mbpp"}}))
    assert_usage_error(wmtp("demo", str(recipe)), "tiny-code")
    recipe.write_text(json.dumps({"model": {"path": str(tmp_path / "m")}, "data": {"source": "tiny-code"},
                                  "eval": {"n_samples": 10, "k": [1], "temperature": 0.0}}))  # fmt: skip
    assert_usage_error(wmtp("demo", str(recipe)), "temperature")
    assert not (tmp_path / "m").exists()


def test_eval_with_a_recipe_uses_its_tiny_code_options(tmp_path):
    from wmtp_cli.evaluation.runner import EvalRequest

    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"model": {"path": "m"}, "data": {"source": "tiny-code", "subset": "seed=3"},
                                  "eval": {"benchmarks": ["tiny-code", "humaneval"]}}))  # fmt: skip
    request = EvalRequest.build(recipe)
    assert request.subsets == {"tiny-code": "seed=3", "humaneval": None}
    assert EvalRequest.build(recipe, subset="seed=4").subsets["tiny-code"] == "seed=4"


def test_demo_runs_every_stage_and_writes_the_report(wmtp, tmp_path):
    recipe = {
        "model": {"path": str(tmp_path / "model"), "dtype": "fp32"},
        "data": {"source": "tiny-code", "split": "train", "subset": "n_train=40,n_test=6,n_incorrect=2", "limit": 12,
                 "max_length": 96},
        "reward": {"source": "execution", "all_or_nothing": True, "allow_code_execution": True},
        "critic": {"hidden_size": 16, "lr": 1e-3, "batch_size": 8, "max_steps": 4, "eval_every": 2, "patience": 2,
                   "val_fraction": 0.25},
        "wmtp": {"weighting": "critic", "lr": 1e-3, "max_steps": 3, "batch_size": 4, "min_reward": 1.0},
        "eval": {"benchmarks": ["tiny-code"], "n_samples": 2, "k": [1, 2], "temperature": 0.8, "max_new_tokens": 24,
                 "batch_size": 12},
        "pretrain": {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "trunk_layers": 1,
                     "attention_heads": 4, "stdlib_mb": 0.01, "max_length": 64, "max_steps": 6, "batch_size": 8,
                     "warmup_steps": 1},
        "run": {"output_dir": str(tmp_path / "runs"), "name": "d", "log_every": 1, "save_every": 100},
    }  # fmt: skip
    path = tmp_path / "demo.yaml"
    path.write_text(json.dumps(recipe))
    result = wmtp("demo", str(path))
    assert result.returncode == 0, result.stderr

    folder = tmp_path / "runs" / "d" / "demo"
    summary = json.loads((folder / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["pretrained", "critic", "uniform", "ntp"]
    for m in summary["models"]:
        assert set(m["pass_at_k"]) == {"1", "2"} and m["n_samples_total"] == 12 and len(m["head_ce"]) == 4
    assert summary["score"]["agreement"] == 1.0  # execution agrees with tiny-code's labels
    assert summary["score"]["completions"] == 12 * 3
    assert summary["critic"]["n_test_incorrect"] == 12 and summary["critic"]["n_mutated_tokens"] > 0
    assert summary["models"][1]["train_loss"] is not None and summary["models"][0]["train_loss"] is None
    # Seconds are rounded to 0.1 in the summary, so a stage that is quick on a fast machine shows 0.0: each stage
    # must be timed and lie within the total (rounding keeps that order), and only the whole pipeline is > 0.
    seconds = summary["seconds"]
    assert seconds["total"] > 0
    for stage in ("pretrain", "score", "train-critic", "train-wmtp critic", "eval ntp"):
        assert 0 <= seconds[stage] <= seconds["total"], (stage, seconds)
    for weighting in ("critic", "uniform", "ntp"):
        assert (tmp_path / "runs" / "d" / f"wmtp-{weighting}" / "final" / "config.json").is_file()
    page = (folder / "report.html").read_text()
    assert page.count("<iframe") == 2 and page.count("data:image/png;base64,") == 3
    assert "| pretrained |" in (folder / "comparison.md").read_text()
    assert "pretrained" in result.stdout and f"report: {folder / 'report.html'}" in result.stdout

    again = wmtp("demo", str(path))  # pretraining is cached, every other stage runs again
    assert again.returncode == 0, again.stderr
    assert json.loads((folder / "summary.json").read_text())["pretrain"]["cached"] is True
