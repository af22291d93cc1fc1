"""``wmtp score``: attach rewards to a recipe's data. A thin layer over :func:`wmtp_cli.rewards.score`."""

from __future__ import annotations

import typer
from rich.table import Table

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import AllowCodeExecutionOpt, OverridesArg, SandboxOpt, command, recipe_arg
from wmtp_cli.cli.progress import stage_progress

app = typer.Typer()


_BARS = " ▁▂▃▄▅▆▇█"


def _sparkline(counts: list[int]) -> str:
    top = max(counts) or 1
    return "".join(_BARS[round(c / top * (len(_BARS) - 1))] for c in counts)


@command(app, "score", "Attach rewards to training data.")
def score_command(
    recipe: recipe_arg("data, reward, model, run"),
    overrides: OverridesArg = None,
    allow_code_execution: AllowCodeExecutionOpt = False,
    sandbox: SandboxOpt = None,
) -> None:
    """Attach a reward to every (prompt, completion) of the recipe's data: the data set's own solutions, the
    model's samples, or both (reward.completions); rewards from labels, sandboxed execution of the tests, or a
    reward model (reward.source). Writes <run.output_dir>/<run.name>/scored (datasets.load_from_disk). An
    interrupted run picks up where it stopped.

    Examples:
        wmtp score recipes/tiny-smoke.yaml reward.source=execution --allow-code-execution
        wmtp score recipes/mtp-7b-codecontests.yaml reward.completions=both reward.n_samples=8 --allow-code-execution
    """
    from wmtp_cli.config import load_recipe
    from wmtp_cli.rewards import score

    sandbox_override = [f"execution.isolation={sandbox}"] if sandbox else []
    resolved = load_recipe(recipe, [*(overrides or ()), *sandbox_override], need=("data", "reward"))
    with stage_progress() as progress:
        result = score(resolved, allow_code_execution=allow_code_execution, progress=progress)

    table = Table(title=f"scored {result.rows} completions", title_justify="left")
    for column in ("source", "count", "mean reward", "pass rate", "histogram"):
        table.add_column(column, justify="left" if column in ("source", "histogram") else "right")
    for source, s in result.summary.items():
        rate = "-" if s.pass_rate is None else f"{s.pass_rate:.1%}"
        histogram = f"{s.bins[0]:g} {_sparkline(s.histogram)} {s.bins[1]:g}"
        table.add_row(source, str(s.count), f"{s.reward_mean:.3f}", rate, histogram)
    console.print(table)
    if result.reused_chunks:
        console.print(f"reused {result.reused_chunks} finished chunk(s) from an earlier run", style="dim")
    console.print(f"[green]ok[/] wrote {result.path}")
