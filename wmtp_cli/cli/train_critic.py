"""``wmtp train-critic``: stage 1. A thin layer over :func:`wmtp_cli.training.train_critic`."""

from __future__ import annotations

import typer
from rich.table import Table

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import OverridesArg, command, recipe_arg
from wmtp_cli.cli.progress import stage_progress

app = typer.Typer()


@command(app, "train-critic", "Stage 1: value head on the frozen MTP model.")
def train_critic_command(recipe: recipe_arg("model, data, critic, run"), overrides: OverridesArg = None) -> None:
    """Stage 1: train the critic, a value head on the frozen MTP model's trunk, by MSE to return targets from
    the rewards of `wmtp score` (critic.return_target). Holds out critic.val_fraction of the problems, stops when
    the validation loss stops improving, and reports how well the final-state value predicts the reward. Writes
    <run folder>/critic.

    Examples:
        wmtp train-critic recipes/tiny-smoke.yaml
        wmtp train-critic recipes/mtp-7b-codecontests.yaml critic.return_target=gae critic.lr=3e-4
        accelerate launch --config_file recipes/accelerate/1gpu.yaml -m wmtp_cli train-critic RECIPE
    """
    from wmtp_cli.config import load_recipe
    from wmtp_cli.training import train_critic

    resolved = load_recipe(recipe, overrides or (), need=("model", "data", "critic"))
    with stage_progress() as progress:
        result = train_critic(resolved, progress=progress)
    r = result.report
    table = Table(title="critic on held-out problems", title_justify="left", show_header=False)
    table.add_row("validation MSE", f"{r.val_loss:.4f}")
    table.add_row("final value vs reward (Pearson r)", f"{r.final_value_pearson:.3f}")
    table.add_row(
        "final value AUC", "- (rewards not binary)" if r.final_value_auc is None else f"{r.final_value_auc:.3f}"
    )
    table.add_row("examples (train / validation)", f"{r.train_examples} / {r.val_examples}")
    stop = f"stopped early at step {r.steps}" if r.stopped_early else f"ran all {r.steps} steps"
    table.add_row("steps", f"best at {r.best_step}; {stop}")
    console.print(table)
    console.print(f"[green]ok[/] wrote {result.folder}")
