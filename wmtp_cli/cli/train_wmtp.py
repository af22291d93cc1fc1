"""``wmtp train-wmtp``: stage 2. A thin layer over :func:`wmtp_cli.training.train_wmtp`."""

from __future__ import annotations

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import ForceOpt, OverridesArg, ResumeOpt, command, recipe_arg
from wmtp_cli.cli.progress import stage_progress

app = typer.Typer()


@command(app, "train-wmtp", "Stage 2: critic-weighted MTP fine-tuning.")
def train_wmtp_command(
    recipe: recipe_arg("model, data, critic, wmtp, run"),
    overrides: OverridesArg = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
) -> None:
    """Stage 2: fine-tune the MTP model with L_WMTP + lambda_vf * L_VF. wmtp.weighting picks the per-head
    weights: critic (softmax of the critic's delta / temperature), uniform (plain MTP), ntp (next token only) or
    dense_reward (delta from the dense rewards of `wmtp score`). Writes <run folder>/wmtp-<weighting>: metrics,
    checkpoints every run.save_every steps, and final/, a model folder.

    Examples:
        wmtp train-wmtp recipes/tiny-smoke.yaml
        wmtp train-wmtp recipes/tiny-smoke.yaml wmtp.weighting=uniform
        wmtp train-wmtp recipes/tiny-smoke.yaml --resume
        accelerate launch --config_file recipes/accelerate/fsdp2-8gpu.yaml -m wmtp_cli train-wmtp \
            recipes/mtp-7b-codecontests.yaml
    """
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
    if result.pushed:
        console.print(f"[green]ok[/] pushed it to {result.pushed}")
