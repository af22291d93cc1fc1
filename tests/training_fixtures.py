"""A tiny, complete training setup for tests: MTP model, local problems, scored data, and a critic."""

from __future__ import annotations

import json
from pathlib import Path

from tiny_models import make_tiny_mtp_model


def problems(n: int = 12) -> list[dict]:
    """n problems, each with one correct and one incorrect solution (the sign flips)."""
    rows = []
    for i in range(n):
        prompt = f"# f{i}(a): a plus {i}\n"
        tests = [f"assert f{i}(1) == {1 + i}"]
        for sign, label in (("+", 1), ("-", 0)):
            completion = f"def f{i}(a):\n    return a {sign} {i}\n"
            row = {"task_id": f"t{i}", "prompt": prompt, "completion": completion, "tests": tests, "label": label}
            rows.append(row)
    return rows


def write_recipe(folder: Path, model_dir: Path, name: str = "r", **sections) -> Path:
    """A recipe for the tiny model and ``folder/data.jsonl``; ``sections`` override keys."""
    data_file = folder / "data.jsonl"
    if not data_file.exists():
        data_file.write_text("".join(json.dumps(r) + "\n" for r in problems()))
    recipe = {
        "model": {"path": str(model_dir), "dtype": "fp32"},
        "data": {"source": "local", "path": str(data_file), "max_length": 64},
        "critic": {"hidden_size": 16, "lr": 1e-2, "batch_size": 4, "max_steps": 10, "eval_every": 5},
        "wmtp": {"lr": 1e-3, "max_steps": 3, "batch_size": 2, "grad_accum": 2, "lambda_vf": 0.5},
        "run": {"output_dir": str(folder / "runs"), "name": name, "log_every": 1, "save_every": 2, "seed": 0},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def scored_setup(folder: Path, with_critic: bool = True) -> Path:
    """Model, data, ``wmtp score`` (labels) and, optionally, ``wmtp train-critic``; returns the recipe path."""
    from wmtp_cli.config import load_recipe
    from wmtp_cli.rewards import score
    from wmtp_cli.training import train_critic

    model = make_tiny_mtp_model(folder / "model")
    path = write_recipe(folder, model)
    recipe = load_recipe(path, [])
    score(recipe)
    if with_critic:
        train_critic(recipe)
    return path
