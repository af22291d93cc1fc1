"""``wmtp compare``: weightings side by side over seeds, with intervals. A thin layer over :mod:`wmtp_cli.compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import AllowCodeExecutionOpt, OverridesArg, command, recipe_arg
from wmtp_cli.cli.progress import stage_progress

app = typer.Typer()


@command(app, "compare", "Weightings side by side over seeds, with intervals.")
def compare_command(
    recipe: recipe_arg("model, data, wmtp, eval"),
    overrides: OverridesArg = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds (run.seed of each cell).")] = "0,1,2",
    weightings: Annotated[
        str, typer.Option("--weightings", help="Comma-separated wmtp.weighting values.")
    ] = "critic,uniform,ntp",
    grid: Annotated[
        str | None, typer.Option("--grid", help="One recipe key and its values, e.g. wmtp.temperature=0.1,0.3,1.")
    ] = None,
    baseline: Annotated[
        str, typer.Option("--baseline", help="The weighting the others are compared with.")
    ] = "uniform",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default <run folder>/compare).")] = None,
    allow_code_execution: AllowCodeExecutionOpt = False,
) -> None:
    """Fine-tune and evaluate every (seed, weighting, grid value) cell of one recipe, and compare them with
    intervals: pass@k of each cell (mean over seeds and problems, 95% bootstrap interval over both), its weight
    diagnostics, and its difference from the baseline weighting with a paired interval and a paired permutation
    p-value (same seed, same problem). What cells share is made once (pretraining, scoring, each seed's critic);
    finished cells are kept, so an interrupted compare resumes. Writes <run folder>/compare (or --out): table.md,
    table.json, problems.jsonl, pass_at_1.png.

    Examples:
        wmtp compare recipes/tiny-demo.yaml --seeds 0,1,2 --weightings critic,uniform,ntp
        wmtp compare recipes/tiny-demo.yaml --seeds 0,1,2 --weightings critic,uniform --grid wmtp.temperature=0.1,0.3,1
    """
    from wmtp_cli.compare import parse_grid, parse_seeds, parse_weightings, plan_compare, run_compare
    from wmtp_cli.execution import require_code_execution

    plan = plan_compare(recipe, overrides or (), parse_seeds(seeds), parse_weightings(weightings), parse_grid(grid),
                        baseline, out)  # fmt: skip
    require_code_execution(allow_code_execution or plan.base.reward.allow_code_execution)
    with stage_progress() as progress:
        result = run_compare(
            plan, allow_code_execution=True, progress=progress,
            announce=lambda stage: console.print(Rule(stage, align="left", style="dim")),
        )  # fmt: skip
    console.print((result.folder / "table.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    reused = f"; {len(result.reused)} reused from an earlier run" if result.reused else ""
    console.print(f"{len(result.computed)} cell(s) run{reused}; took {result.seconds / 60:.1f} min", style="dim")
    console.print(f"[green]ok[/] wrote {result.folder}", soft_wrap=True)
