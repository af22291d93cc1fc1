"""Where a recipe's outputs live: one run folder per experiment, one subfolder per stage.

    <run.output_dir>/<run.name>/
        scored/            wmtp score          (the scored data set)
        critic/            wmtp train-critic   (value head, metrics, report)
        wmtp-<weighting>/  wmtp train-wmtp     (checkpoints/, final/ model folder, metrics)

With no ``run.name`` the folder is named from a hash of the settings that decide the scored data
(data, reward, model, seed), so every stage of one recipe meets the same folder, and a change to
those settings starts a new one. Each stage reads the previous stage's output from here unless the
recipe names it (``data.scored``, ``wmtp.critic_path``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from wmtp_cli.config import Recipe, recipe_to_dict


def settings_key(recipe: Recipe) -> str:
    """A hash of the settings that decide the scored data: data, reward and model sections, and the seed."""
    settings = recipe_to_dict(recipe)
    relevant = {k: settings[k] for k in ("data", "reward", "model") if settings.get(k) is not None}
    relevant["data"] = {k: v for k, v in relevant["data"].items() if k != "scored"}
    relevant["seed"] = recipe.run.seed
    relevant["format"] = 1  # bump when the scored format changes
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


RUN_FOLDER = "the run folder (run.output_dir / run.name)"
"""How an error names a folder under the run folder: the recipe keys that place it."""


def run_folder(recipe: Recipe) -> Path:
    """``run.output_dir / run.name``; with no name, one derived from :func:`settings_key`."""
    name = recipe.run.name or f"run-{settings_key(recipe)[:10]}"
    return Path(recipe.run.output_dir) / name


def scored_path(recipe: Recipe) -> Path:
    """The scored data set the training stages read."""
    return Path(recipe.data.scored) if recipe.data.scored else run_folder(recipe) / "scored"


def critic_folder(recipe: Recipe) -> Path:
    """Where ``wmtp train-critic`` writes its value head."""
    return run_folder(recipe) / "critic"


def critic_source(recipe: Recipe) -> Path:
    """The value head ``wmtp train-wmtp`` starts from."""
    return Path(recipe.wmtp.critic_path) if recipe.wmtp.critic_path else critic_folder(recipe)


def wmtp_folder(recipe: Recipe) -> Path:
    """Where ``wmtp train-wmtp`` writes, one folder per weighting so baselines sit side by side."""
    return run_folder(recipe) / f"wmtp-{recipe.wmtp.weighting}"
