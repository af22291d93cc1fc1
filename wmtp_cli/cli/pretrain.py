"""``wmtp pretrain``: a small MTP model from scratch. A thin layer over :func:`wmtp_cli.pretraining.pretrain`."""

from __future__ import annotations

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import ForceOpt, OverridesArg, ResumeOpt, command, recipe_arg
from wmtp_cli.cli.progress import stage_progress

app = typer.Typer()


@command(app, "pretrain", "Train a small MTP model from scratch.")
def pretrain_command(
    recipe: recipe_arg("model, data, pretrain, run"),
    overrides: OverridesArg = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Train a small multi-token-prediction model from scratch (uniform MTP loss, pretrain.n_future heads) with
    a byte-level BPE tokenizer trained on its corpus: the recipe's problems with their correct solutions and
    pretrain.stdlib_mb of the Python standard library's source. Writes the model folder to model.path; a rerun
    with the same settings finds it and does nothing.

    Examples:
        wmtp pretrain recipes/tiny-smoke.yaml
        wmtp pretrain recipes/tiny-smoke.yaml pretrain.max_steps=500 --force
    """
    from wmtp_cli.config import load_recipe
    from wmtp_cli.pretraining import pretrain

    resolved = load_recipe(recipe, overrides or (), need=("model", "data", "pretrain"))
    with stage_progress() as progress:
        result = pretrain(resolved, resume=resume, force=force, progress=progress)
    if result.cached:
        console.print(f"[green]ok[/] {result.model_dir} is already pretrained with these settings (--force retrains)")
        return
    heads = "  ".join(f"h{k}={result.last[f'ce_head_{k}']:.3f}" for k in range(1, 9) if f"ce_head_{k}" in result.last)
    console.print(f"step {result.steps}: loss {result.last.get('loss', float('nan')):.4f}; CE per head {heads}")
    console.print(f"[green]ok[/] wrote {result.model_dir}")
