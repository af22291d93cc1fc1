"""``wmtp pretrain``: a small MTP model from scratch. A thin layer over :func:`wmtp_cli.pretraining.pretrain`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.progress import stage_progress

HELP = (
    "Train a small multi-token-prediction model from scratch (uniform MTP loss, pretrain.n_future heads) with a "
    "byte-level BPE tokenizer trained on its corpus: the recipe's problems with their correct solutions and "
    "pretrain.stdlib_mb of the Python standard library's source. Writes the model folder to model.path; a rerun "
    "with the same settings finds it and does nothing.\n\n"
    "[bold]Examples[/]\n\n"
    "  wmtp pretrain recipes/tiny-smoke.yaml\n\n"
    "  wmtp pretrain recipes/tiny-smoke.yaml pretrain.max_steps=500 --force\n"
)


def register(app: typer.Typer) -> None:
    app.command("pretrain", help=HELP, short_help="Train a small MTP model from scratch.")(pretrain_command)


def pretrain_command(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe (model, data, pretrain, run sections).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="section.key=value overrides.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted pretraining run.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing model at model.path.")] = False,
) -> None:
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
