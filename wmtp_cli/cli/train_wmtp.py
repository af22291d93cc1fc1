"""``wmtp train-wmtp``: stage 2. A thin layer over :func:`wmtp_cli.training.train_wmtp`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.progress import stage_progress

HELP = (
    "Stage 2: fine-tune the MTP model with L_WMTP + lambda_vf * L_VF. wmtp.weighting picks the per-head weights: "
    "critic (softmax of the critic's delta / temperature), uniform (plain MTP), ntp (next token only) or "
    "dense_reward (delta from the dense rewards of `wmtp score`). Writes <run folder>/wmtp-<weighting>: metrics, "
    "checkpoints every run.save_every steps, and final/, a model folder.\n\n"
    "[bold]Examples[/]\n\n"
    "  wmtp train-wmtp recipes/tiny-smoke.yaml\n\n"
    "  wmtp train-wmtp recipes/tiny-smoke.yaml wmtp.weighting=uniform\n\n"
    "  wmtp train-wmtp recipes/tiny-smoke.yaml --resume\n\n"
    "  accelerate launch --config_file recipes/accelerate/fsdp2-8gpu.yaml -m wmtp_cli train-wmtp "
    "recipes/mtp-7b-codecontests.yaml\n"
)


def register(app: typer.Typer) -> None:
    app.command("train-wmtp", help=HELP, short_help="Stage 2: critic-weighted MTP fine-tuning.")(train_wmtp_command)


def train_wmtp_command(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe (model, data, critic, wmtp, run sections).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="section.key=value overrides.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's latest checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete an earlier run in the same folder first.")] = False,
) -> None:
    from wmtp_cli.config import load_recipe
    from wmtp_cli.training import train_wmtp

    if resume and force:
        raise typer.BadParameter("--resume continues the earlier run and --force deletes it: pass one of them")
    resolved = load_recipe(recipe, overrides or (), need=("model", "data", "wmtp"))
    with stage_progress() as progress:
        result = train_wmtp(resolved, resume=resume, force=force, progress=progress)
    last = result.last
    if result.resumed_from is not None:
        console.print(f"resumed from step {result.resumed_from}", style="dim")
    if last:
        heads = "  ".join(f"h{k}={last[f'ce_head_{k}']:.3f}" for k in range(1, 9) if f"ce_head_{k}" in last)
        losses = f"loss {last['loss']:.4f} (LM {last['lm_loss']:.4f}, VF {last['vf_loss']:.4f})"
        console.print(f"step {result.steps}: {losses}; CE per head {heads}")
    console.print(f"[green]ok[/] wrote {result.final_dir}")
