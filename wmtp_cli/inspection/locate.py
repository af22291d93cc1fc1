"""Which model and critic ``wmtp inspect-weights`` reads: the folders named, or the latest run's.

A critic is a folder with ``value_head.safetensors`` and ``value_head.json``: ``<run>/critic`` (from
``wmtp train-critic``; its ``recipe.yaml`` names the model in ``model.path``) or
``<run>/wmtp-critic/final`` (from ``wmtp train-wmtp``; a model folder itself, the head beside the model).

With neither named, the latest run under the runs folder (``run.output_dir``, ``runs`` by default) is the
one whose newest value head is newest; within it the fine-tuned ``wmtp-*/final`` comes before ``critic``,
as it holds the critic training ended with, on the model it fine-tuned. A ``recipe.yaml`` beside the head
also gives the number of heads (``model.n_future``) and the temperature (``wmtp.temperature``) training used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wmtp_cli.critic.value_head import WEIGHTS_NAME, has_value_head
from wmtp_cli.errors import UsageError

DEFAULT_RUNS = Path("runs")  # RunConfig.output_dir's default
RECIPE = "recipe.yaml"


@dataclass
class Sources:
    model: str  # model folder (or hub id)
    critic: Path  # folder holding the value head
    n_future: int | None = None  # model.n_future of the recipe beside the critic, when it sets one
    temperature: float | None = None  # wmtp.temperature of that recipe
    found: str | None = None  # how they were found, when nothing was named


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _recipe_settings(critic: Path) -> tuple[str | None, int | None, float | None]:
    """(model.path, model.n_future, wmtp.temperature) of the recipe.yaml beside a critic; Nones without one."""
    path = critic / RECIPE
    if not path.is_file():
        return None, None, None
    from wmtp_cli.config import load_recipe

    try:
        recipe = load_recipe(path)
    except UsageError as exc:
        raise UsageError(f"cannot read the recipe beside the critic ({exc}): pass --model and --temperature") from None
    model = recipe.model.path if recipe.model else None
    return model, recipe.model.n_future if recipe.model else None, recipe.wmtp.temperature


def _sources(critic: Path, model: str | None, found: str | None = None) -> Sources:
    if not has_value_head(critic):
        raise UsageError(
            f"{critic} holds no value head (value_head.safetensors and value_head.json): pass a `wmtp train-critic` "
            "folder (<run>/critic) or a fine-tuned model folder (<run>/wmtp-critic/final)"
        )
    recipe_model, n_future, temperature = _recipe_settings(critic)
    if model is None:
        if _is_model_folder(critic):
            model = str(critic)  # a fine-tuned model folder with its value head beside it
        elif recipe_model:
            model = recipe_model
        else:
            raise UsageError(f"cannot tell which model the critic in {critic} was trained on: pass --model")
    return Sources(model=model, critic=critic, n_future=n_future, temperature=temperature, found=found)


def find_sources(model: str | None, critic: Path | None, runs: Path = DEFAULT_RUNS) -> Sources:
    """The model and critic to read: those named, the value head inside a named model folder, or the latest run's."""
    if critic is not None:
        return _sources(Path(critic), model)
    if model is not None:
        if has_value_head(Path(model)):
            return _sources(Path(model), model)
        raise UsageError(
            f"the model folder {model} has no value head beside it: pass --critic (a `wmtp train-critic` folder)"
        )
    return latest_run(runs)


def _mtime(folder: Path) -> float:
    return (folder / WEIGHTS_NAME).stat().st_mtime


def latest_run(runs: Path = DEFAULT_RUNS) -> Sources:
    """The latest run's critic (see the module docstring); a :class:`UsageError` when there is none."""
    runs = Path(runs)
    hint = "train one with `wmtp train-critic RECIPE`, or pass --critic (and --model)"
    if not runs.is_dir():
        raise UsageError(f"there is no runs folder {runs}, so no latest run to inspect: {hint}, or --runs DIR")
    best: tuple[float, Path, bool] | None = None  # (newest head's mtime, chosen folder, is a final/)
    for run in sorted(runs.iterdir()):
        if not run.is_dir():
            continue
        finals = [f for f in sorted(run.glob("wmtp-*/final")) if has_value_head(f)]
        candidates = finals + ([run / "critic"] if has_value_head(run / "critic") else [])
        if not candidates:
            continue
        newest = max(_mtime(folder) for folder in candidates)
        # within a run, a fine-tuned final/ (the newest, if several) comes before critic/
        chosen = max(finals, key=_mtime) if finals else candidates[0]
        if best is None or newest > best[0]:
            best = (newest, chosen, bool(finals))
    if best is None:
        raise UsageError(f"no trained critic in any run under {runs}: {hint}")
    _, folder, is_final = best
    kind = "fine-tuned model and its critic" if is_final else "critic"
    return _sources(folder, None, found=f"the latest run's {kind}: {folder}")


def load_sources(sources: Sources):
    """(model, tokenizer, value head, heads to use) for ``sources``, on the GPU when there is one.

    fp32 on the CPU; on a GPU bf16 where supported, as ``wmtp train-critic`` runs the frozen model. The
    critic is checked against the model's config before the model's weights load, so a mismatch fails fast.
    """
    import torch

    from wmtp_cli.config.schema import ModelConfig
    from wmtp_cli.critic import ValueHead
    from wmtp_cli.model.loading import default_device, load_config, load_model_and_tokenizer

    hidden_size = getattr(load_config(sources.model, "the model"), "hidden_size", None)
    head = ValueHead.load(sources.critic, expect_input_size=hidden_size)
    device = default_device()
    dtype = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    loaded = load_model_and_tokenizer(ModelConfig(path=sources.model, dtype=dtype), device=device, what="the model")
    model = loaded.model
    if head.config.input_size != getattr(model.config, "hidden_size", head.config.input_size):
        head = ValueHead.load(sources.critic, expect_input_size=model.config.hidden_size)  # raises, saying why
    return model, loaded.tokenizer, head.to(device).eval(), sources.n_future
