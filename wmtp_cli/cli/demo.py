"""``wmtp demo``: the whole pipeline on the tiny-code benchmark. A thin layer over :func:`wmtp_cli.demo.run_demo`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.rule import Rule
from rich.table import Table

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import AllowCodeExecutionOpt, OverridesArg, command
from wmtp_cli.cli.progress import stage_progress

if TYPE_CHECKING:
    from wmtp_cli.demo.summary import DemoSummary

DEFAULT_RECIPE = Path("recipes/tiny-demo.yaml")

app = typer.Typer()


@command(app, "demo", "The whole pipeline on the embedded tiny-code benchmark.")
def demo_command(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with every section.")] = DEFAULT_RECIPE,
    overrides: OverridesArg = None,
    allow_code_execution: AllowCodeExecutionOpt = False,
    force_pretrain: Annotated[
        bool, typer.Option("--force-pretrain", help="Pretrain again even when a model with these settings exists.")
    ] = False,
) -> None:
    """Run every stage of WMTP on the embedded tiny-code benchmark, on a laptop CPU in minutes, with no
    download: pretrain a small MTP model (cached after the first run), score the training solutions by running
    their tests in the sandbox, train the critic, fine-tune three ways from the same start (critic, uniform, ntp
    weighting), evaluate pass@k on the held-out test split, and show the critic's weights on one correct and one
    incorrect solution. Ends with a comparison table and writes <run folder>/demo/report.html.

    Every stage is also its own command (wmtp pretrain, score, train-critic, train-wmtp, eval, inspect-weights)
    on the same recipe.

    Examples:
        wmtp demo
        wmtp demo recipes/tiny-demo.yaml wmtp.max_steps=200 eval.n_samples=20
    """
    from wmtp_cli.cli.inspect_weights import inspection_table
    from wmtp_cli.config import load_recipe
    from wmtp_cli.demo import run_demo

    resolved = load_recipe(recipe, overrides or ())
    with stage_progress() as progress:
        result = run_demo(
            resolved, str(recipe), allow_code_execution=allow_code_execution, force_pretrain=force_pretrain,
            progress=progress, announce=lambda stage: console.print(Rule(stage, align="left", style="dim")),
        )  # fmt: skip
    summary = result.summary
    for caption, view in result.views:
        console.print(Rule(f"inspect-weights, {caption}", align="left"))
        console.print(inspection_table(view, {"model": summary.models[0].model}, limit=0))

    console.print(Rule("results", align="left"))
    console.print(_comparison(summary))
    console.print(_critic(summary))
    seconds = summary.seconds
    console.print(f"took {seconds['total'] / 60:.1f} min (" + ", ".join(
        f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total") + ")", style="dim")  # fmt: skip
    console.print(f"[green]ok[/] report: {result.report}", soft_wrap=True)


def _number(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _comparison(summary: DemoSummary) -> Table:
    e = summary.eval
    title = (
        f"tiny-code test split: {e.n_problems} held-out problems, n = {e.n_samples} samples each "
        f"(temperature {e.temperature:g})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for k in e.k:
        table.add_column(f"pass@{k}", justify="right")
    table.add_column("passed", justify="right")
    n_heads = max(len(m.head_ce) for m in summary.models)
    for h in range(1, n_heads + 1):
        table.add_column(f"h{h} CE / top-1", justify="right")
    table.add_column("train h1 CE", justify="right")
    for m in summary.models:
        heads = [f"{ce:.3f} / {acc:.3f}" for ce, acc in zip(m.head_ce, m.head_top1, strict=True)]
        table.add_row(
            m.name, *(f"{m.pass_at_k[str(k)]:.3f}" for k in e.k), f"{m.n_passed}/{m.n_samples_total}", *heads,
            _number(m.train_loss),
        )  # fmt: skip
    return table


def _critic(summary: DemoSummary) -> Table:
    c, s = summary.critic, summary.score
    table = Table(title="critic (frozen pretrained model + value head)", title_justify="left", show_header=False)
    table.add_row("scored completions (passed / all)", f"{s.correct} / {s.completions}; agree with labels "
                  f"{_number(s.agreement)}")  # fmt: skip
    table.add_row("final-value AUC, validation problems", _number(c.val_auc))
    table.add_row(
        "final-value AUC, test split",
        f"{_number(c.test_auc)} ({c.n_test_correct} correct, {c.n_test_incorrect} incorrect)",
    )
    table.add_row(
        "mean |delta|: mutated / other tokens",
        f"{c.mutated_abs_delta:.4f} / {c.other_abs_delta:.4f} = {_number(c.delta_ratio, '.1f')}x "
        f"({c.n_mutated_tokens} / {c.n_other_tokens} tokens)",
    )
    return table
